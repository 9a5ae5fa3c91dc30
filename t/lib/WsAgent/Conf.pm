package WsAgent::Conf;

# A block's "--- ws_agent" lines applied to a file's default location: a
# ws_agent* directive replaces the default one of that name, any other
# directive is added, so a block shows only what it changes.

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(with_changes ws_location);

# The proxied WebSocket location of the test files: /ws to the block's
# backend with the Upgrade headers, then the given directives (a string,
# one per line, or a list), e.g. ws_location("ws_agent on;", ...).
sub ws_location {
    my $extra = join '', map { "        $_\n" }
                grep { /\S/ } map { s/^\s+//r } map { split /\n/ } @_;
    return <<'_EOC_' . $extra . "    }\n";
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
_EOC_
}

sub with_changes {
    my ($loc, $changes) = @_;
    for my $line (grep { /\S/ } split /\n/, $changes // '') {
        $line =~ s/^\s+//;
        my ($d) = $line =~ /^(\S+)/;
        $loc =~ s/^\s*\Q$d\E\s[^\n]*\n//m if $d =~ /^ws_agent/;
        $loc =~ s/(    \}\n)\z/        $line\n$1/;
    }
    return $loc;
}

1;
