package WsAgent::Tls;

# A throw-away PKI for one test file, made with the openssl CLI (P-256
# keys, valid 2 days) in $dir, which is $TEST_NGINX_TLS_DIR:
#
#   ca.pem ca.key                 the good CA
#   wrong-ca.pem wrong-ca.key     another CA nothing is configured to trust
#   server.pem server.key         signed by the good CA
#   wrong-server.pem .key         signed by the wrong CA
#   client.pem client.key         signed by the good CA (clientAuth)
#
# Both server certificates are for DNS:redis.test, DNS:localhost and
# IP:127.0.0.1 (CN redis.test).

use strict;
use warnings;

use File::Path qw(make_path);
use POSIX ();
use WsAgent::Util qw(spit);

my $OPENSSL = $ENV{TEST_NGINX_OPENSSL} || 'openssl';

our $SAN = 'DNS:redis.test,DNS:localhost,IP:127.0.0.1';

sub new {
    my ($class, %opt) = @_;
    my $self = bless { %opt }, $class;
    $self->make unless -f "$self->{dir}/client.pem";
    return $self;
}

sub dir { $_[0]{dir} }

# name => path: "ca", "server", "wrong-server.key", ...
sub file {
    my ($self, $name) = @_;
    return "$self->{dir}/" . ($name =~ /\./ ? $name : "$name.pem");
}

sub run {
    my ($self, @args) = @_;
    my $log = "$self->{dir}/openssl.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec $OPENSSL, @args or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    die "openssl @args failed (see $log):\n"
        . (WsAgent::Util::slurp($log) // '') if $?;
}

sub key_and_csr {
    my ($self, $name, $cn) = @_;
    my $d = $self->{dir};
    $self->run(qw(req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
                  -nodes), -keyout => "$d/$name.key", -out => "$d/$name.csr",
               -subj => "/CN=$cn");
}

sub ca {
    my ($self, $name, $cn) = @_;
    my $d = $self->{dir};
    $self->run(qw(req -x509 -new -newkey ec -pkeyopt
                  ec_paramgen_curve:prime256v1 -nodes -days 2),
               -keyout => "$d/$name.key", -out => "$d/$name.pem",
               -subj => "/CN=$cn",
               -addext => 'basicConstraints=critical,CA:TRUE',
               -addext => 'keyUsage=critical,keyCertSign,cRLSign');
}

sub leaf {
    my ($self, $name, $cn, $ca, $ext) = @_;
    my $d = $self->{dir};
    $self->key_and_csr($name, $cn);
    spit("$d/$name.ext", "basicConstraints=CA:FALSE\n"
         . "keyUsage=critical,digitalSignature,keyEncipherment\n$ext\n");
    $self->run(qw(x509 -req -days 2), -in => "$d/$name.csr",
               -CA => "$d/$ca.pem", -CAkey => "$d/$ca.key",
               -set_serial => int(rand(2**31)) + 1,
               -extfile => "$d/$name.ext", -out => "$d/$name.pem");
    unlink "$d/$name.csr", "$d/$name.ext";
}

sub make {
    my ($self) = @_;
    make_path($self->{dir});
    $self->ca('ca', 'ws_agent test CA');
    $self->ca('wrong-ca', 'ws_agent wrong CA');
    my $server = "subjectAltName=$SAN\nextendedKeyUsage=serverAuth";
    $self->leaf('server', 'redis.test', 'ca', $server);
    $self->leaf('wrong-server', 'redis.test', 'wrong-ca', $server);
    $self->leaf('client', 'ws_agent client', 'ca',
                'extendedKeyUsage=clientAuth');
    chmod 0644, glob "$self->{dir}/*";
}

1;
