# ngx_ws_agent on Debian 12's own nginx, in two stages.
#
# The build stage runs exactly what a person runs on a fresh Debian 12
# machine (scripts/bootstrap.sh, scripts/build.sh), so the image's module is
# the one the tests and the demo use.  The runtime stage is Debian's nginx of
# the same version, the three libraries the module links (yajl, hiredis,
# OpenSSL), the module in /usr/lib/nginx/modules and nginx.conf.example as
# /etc/nginx/nginx.conf: mount your own configuration over it (its Redis and
# upstream addresses are 127.0.0.1 examples).
#
#   docker build -t ngx_ws_agent .
#   docker run -p 8080:80 -v $PWD/my-nginx.conf:/etc/nginx/nginx.conf:ro ngx_ws_agent

FROM debian:bookworm AS build

WORKDIR /src
COPY . .
RUN scripts/bootstrap.sh \
 && scripts/build.sh \
 && dpkg-query -W -f '${Version}' nginx > build/nginx.version


FROM debian:bookworm

# the module is binary-compatible with the nginx it was built against: the
# same Debian version of nginx is installed here
COPY --from=build /src/build/nginx.version /tmp/nginx.version
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends \
        "nginx=$(cat /tmp/nginx.version)" libyajl2 libhiredis0.14 libssl3 \
 && rm -rf /var/lib/apt/lists/* /tmp/nginx.version \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log

COPY --from=build /src/build/ngx_ws_agent_module.so /usr/lib/nginx/modules/
COPY nginx.conf.example /etc/nginx/nginx.conf

EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
