# ngx_ws_agent on Debian 12's own nginx, in two stages, the Debian way.
#
# The build stage runs what a person runs on a fresh Debian 12 machine:
# scripts/bootstrap.sh debian (the build tools and nginx-dev), then
# dpkg-buildpackage, which builds libnginx-mod-http-ws-agent exactly as
# t/097-debian-package.t does.  The runtime stage installs Debian's nginx
# and that package with apt-get: the package's Depends on the nginx ABI
# (nginx-abi-1.22.1-7) makes apt refuse an nginx the module was not built
# for, and pulls in the libraries it links (yajl, hiredis, OpenSSL).
# nginx.conf.example becomes /etc/nginx/nginx.conf: it loads the module
# itself (it does not include modules-enabled/, where the package enabled
# it as well); mount your own configuration over it (its Redis and
# upstream addresses are 127.0.0.1 examples).
#
#   docker build -t ngx_ws_agent .
#   docker run -p 8080:80 -v $PWD/my-nginx.conf:/etc/nginx/nginx.conf:ro ngx_ws_agent

FROM debian:bookworm AS build

WORKDIR /src
COPY . .
# dpkg-buildpackage writes the packages next to the source, into /; the
# -dbgsym package stays behind
RUN scripts/bootstrap.sh debian \
 && dpkg-buildpackage -us -uc -b \
 && mkdir /deb \
 && mv /libnginx-mod-http-ws-agent_*.deb /deb/


FROM debian:bookworm

COPY --from=build /deb/ /tmp/deb/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends \
        nginx /tmp/deb/libnginx-mod-http-ws-agent_*.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/deb \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log

COPY nginx.conf.example /etc/nginx/nginx.conf

EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
