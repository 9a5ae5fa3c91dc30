package WsAgent::Conf;

# A block's "--- ws_agent" lines applied to a file's default location: a
# ws_agent* directive replaces the default one of that name, any other
# directive is added, so a block shows only what it changes.

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(with_changes);

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
