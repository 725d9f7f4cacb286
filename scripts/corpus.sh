#!/usr/bin/env bash
# Builds dllm's default corpus from Debian packages (installed by scripts/setup.sh):
#   data/corpus/kjv.txt       King James Version        (bible-kjv, bible-kjv-text)
#   data/corpus/web.txt       World English Bible       (sword-text-web, libsword-utils)
#   data/corpus/fortunes.txt  fortune cookies           (fortunes)
# All public domain. Every file holds documents separated by blank lines (a Bible chapter, one
# fortune), one verse or line per line; repeated documents are dropped. Re-running skips
# files that exist. Usage: scripts/corpus.sh [OUT_DIR]
set -euo pipefail
out=${1:-data/corpus}
mkdir -p "$out"

# Writes $1 from the command in the remaining arguments, through a temporary file.
build() {
    local target=$1
    shift
    if [[ -s $target ]]; then echo "corpus: $target exists, skipped"; return; fi
    "$@" >"$target.tmp"
    mv "$target.tmp" "$target"
    echo "corpus: wrote $target ($(wc -c <"$target") bytes)"
}

# The bible program prints "Book N" headings after a blank line and verses as "  N text" with
# wrapped continuation lines: one chapter per document, one verse per line.
kjv() {
    bible -p /usr/lib "Gen1:1-Rev22:21" | perl -ne '
        chomp;
        if (/^\s*$/) { $blank = 1; next }
        if ($blank && /^\S/) { print "$verse\n" if defined $verse; undef $verse;
                               print "\n" if $seen++; $blank = 0; next }
        $blank = 0;
        if (/^\s+\d+\s+(.*)/) { print "$verse\n" if defined $verse; $verse = $1; next }
        $verse .= " $_";
        END { print "$verse\n" if defined $verse }'
}

# mod2imp prints "$$$Book C:V" and then the verse in OSIS markup: drop footnotes and titles,
# strip the tags, tidy the spaces they leave; a blank line between chapters.
web() {
    mod2imp engWEB2015eb 2>/dev/null | perl -ne '
        chomp;
        if (/^\$\$\$(.+) (\d+):(\d+)$/) { $key = "$1 $2"; $verse = $3; next }
        next unless defined $key && $verse > 0;
        s{<note\b.*?</note>}{ }g; s{<title\b.*?</title>}{ }g; s{<[^>]*>}{}g;
        s/\s+/ /g; s/^ //; s/ $//; s/ ([.,;:!?\x{2019}\x{201d})])/$1/g;
        next if $_ eq "";
        print "\n" if defined $last && $key ne $last;
        $last = $key;
        print "$_\n"'
}

# fortune files separate entries with "%" lines; the ASCII-art and non-English files are left out.
fortunes() {
    local dir=/usr/share/games/fortunes
    for f in "$dir"/*; do
        case $(basename "$f") in
            *.dat | *.u8 | art | ascii-art | translate-me) continue ;;
        esac
        [[ -f $f ]] && cat "$f" && printf '\n%%\n'
    done | perl -ne '
        if (/^%\s*$/) { flush(); next }
        s/\s+$//; $doc .= "$_\n" if $_ ne "" || $doc ne "";
        sub flush { $doc =~ s/\n+$//; print "$doc\n\n" if $doc ne "" && !$seen{$doc}++; $doc = "" }
        END { flush() }'
}

build "$out/kjv.txt" kjv
build "$out/web.txt" web
build "$out/fortunes.txt" fortunes
