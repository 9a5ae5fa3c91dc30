package WsAgent::Jwt;

# Test keys and tokens for the JWT blocks, made with the openssl command
# line (RSA 2048, EC P-256/P-384) and Digest::SHA (HMAC): keys in a temp
# directory, tokens signed as a real issuer would.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64url);
use WsAgent::Util qw(slurp spit);

sub new {
    my ($class) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $self = bless { dir => $dir }, $class;

    spit("$dir/secret", "an-hmac-secret-of-more-than-32-bytes\n");
    $self->{secret} = "an-hmac-secret-of-more-than-32-bytes";

    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048"
        . " -out $dir/rsa.key");
    run("openssl pkey -in $dir/rsa.key -pubout -out $dir/rsa.pub");
    for my $c (['ec256', 'P-256'], ['ec384', 'P-384']) {
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$c->[1]"
            . " -out $dir/$c->[0].key");
        run("openssl pkey -in $dir/$c->[0].key -pubout -out $dir/$c->[0].pub");
    }
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024"
        . " -out $dir/small.key");
    run("openssl pkey -in $dir/small.key -pubout -out $dir/small.pub");
    spit("$dir/bad.pem", "-----BEGIN PUBLIC KEY-----\nnot a key\n"
                         . "-----END PUBLIC KEY-----\n");

    # a JWKS with the RSA key as "k1" and the P-256 key as "e1"
    my ($mod) = `openssl rsa -pubin -in $dir/rsa.pub -noout -modulus`
                =~ /Modulus=([0-9A-F]+)/;
    my $der = `openssl pkey -pubin -in $dir/ec256.pub -outform DER`;
    my $point = substr($der, -64);
    spit("$dir/jwks.json", sprintf('{"keys":[{"kty":"RSA","kid":"k1","n":"%s",'
        . '"e":"AQAB"},{"kty":"EC","kid":"e1","crv":"P-256","x":"%s","y":"%s"},'
        . '{"kty":"oct","kid":"h1","k":"%s"}]}',
        encode_base64url(pack 'H*', $mod), encode_base64url(substr $point, 0, 32),
        encode_base64url(substr $point, 32), encode_base64url($self->{secret})));
    return $self;
}

sub dir { $_[0]{dir} }

sub run {
    my ($cmd) = @_;
    system("$cmd 2>/dev/null") == 0 or die "failed: $cmd\n";
}

# token(alg => 'RS256', claims => '{"sub":"alice"}', kid => 'k1',
#       secret => 'x', header => '{...}')
sub token {
    my ($self, %o) = @_;
    my $header = $o{header}
        // '{"alg":"' . $o{alg} . '","typ":"JWT"'
           . (defined $o{kid} ? ',"kid":"' . $o{kid} . '"' : '') . '}';
    my $input = encode_base64url($header) . '.' . encode_base64url($o{claims});
    return "$input." . encode_base64url($self->sign($o{alg}, $input, %o));
}

sub sign {
    my ($self, $alg, $input, %o) = @_;
    my $secret = $o{secret} // $self->{secret};
    return '' if $alg eq 'none';
    return hmac_sha256($input, $secret) if $alg eq 'HS256';
    return hmac_sha384($input, $secret) if $alg eq 'HS384';
    return hmac_sha512($input, $secret) if $alg eq 'HS512';

    my $dir = $self->{dir};
    my ($bits) = $alg =~ /(\d+)$/;
    spit("$dir/input", $input);
    my %key = (RS => 'rsa', PS => 'rsa', ES => $bits == 384 ? 'ec384' : 'ec256');
    my $key = "$dir/$key{substr $alg, 0, 2}.key";
    my $opt = $alg =~ /^PS/
        ? "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:$bits / 8" : '';
    $opt =~ s{(\d+) / 8}{$1 / 8}e;
    my $sig = `openssl dgst -sha$bits -sign $key $opt $dir/input`;
    die "openssl dgst failed for $alg\n" unless length $sig;
    return $alg =~ /^ES/ ? der_to_raw($sig, $bits == 384 ? 48 : 32) : $sig;
}

# ECDSA: DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, fixed width
sub der_to_raw {
    my ($der, $n) = @_;
    my $pos = 2;
    $pos++ if unpack('C', substr $der, 1, 1) & 0x80;
    my @out;
    for (1, 2) {
        my $len = unpack 'C', substr $der, $pos + 1, 1;
        my $int = substr $der, $pos + 2, $len;
        $int =~ s/^\x00+//;
        push @out, ("\x00" x ($n - length $int)) . $int;
        $pos += 2 + $len;
    }
    return join '', @out;
}

1;
