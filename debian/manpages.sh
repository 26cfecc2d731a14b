#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Makes the man pages from the built command's --help, with help2man (called by debian/rules):
#   debian/manpages.sh BINARY VERSION OUTDIR
# scale0(1) from `scale0 --help`, and scale0-SUB(1) from `scale0 SUB --help` for every subcommand
# `scale0 --help` lists (but `version`). The help text is lightly reshaped on its way to help2man:
# example lines get the "$ " prefix help2man keeps verbatim (one command a line: continuation
# lines are joined, set neither justified nor hyphenated), "Exit status:" becomes an EXIT STATUS section (and the durations' line a DURATIONS one), and an option whose
# description CLI11 put one space after it (a name exactly as wide as its column) gets two, so
# help2man sees the description.
set -euo pipefail

binary=$(readlink -f "$1")
version=$2
outdir=$3
mkdir -p "$outdir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# help2man decodes the help text by the locale: "…" must stay UTF-8.
export LC_ALL=C.UTF-8

# reshape: the help text (stdin) as help2man should read it (stdout).
cat >"$work/reshape.awk" <<'EOF'
function flush() { if (held != "") print "  $ " held; held = "" }
/^Examples:$/ { print; examples = 1; next }
examples && /^ +/ {
  line = $0; sub(/^ +/, "", line)
  comment = line ~ /^#/
  if (held != "" && (cont || comment)) {
    if (comment && held ~ /#/) sub(/^# */, "", line)  # a comment that goes on
    held = held " " line
  }
  else { flush(); held = line }
  cont = sub(/ *\\$/, "", held)
  next
}
examples && /^$/ { flush(); print; next }
examples { flush(); examples = 0 }
/^Exit status: / { sub(/^Exit status: /, ""); print "*Exit status*"; print; next }
/^Durations in milliseconds / { print ""; print "*Durations*"; print; next }
/^  -/ && substr($0, 29, 1) != " " && substr($0, 30, 1) == " " && substr($0, 31, 1) != " " {
  $0 = substr($0, 1, 30) " " substr($0, 31)
}
{ print }
END { flush() }
EOF

# A program per page, named as the page, that prints the reshaped help.
subcommands=$("$binary" --help | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 } /^$/ { s = 0 }')
pages=(scale0)
printf '#!/bin/sh\n"%s" --help | awk -f "%s"\n' "$binary" "$work/reshape.awk" >"$work/scale0"
for sub in $subcommands; do
  [ "$sub" = version ] && continue
  pages+=("scale0-$sub")
  printf '#!/bin/sh\n"%s" %s --help | awk -f "%s"\n' "$binary" "$sub" "$work/reshape.awk" \
    >"$work/scale0-$sub"
done
chmod +x "${pages[@]/#/$work/}"

for name in "${pages[@]}"; do
  help=$("$work/$name")  # whole (a reader that stops early would make it die of SIGPIPE)
  if [ "$name" = scale0 ]; then
    summary="service-oriented LRU load balancer on ZeroMQ"
  else  # the subcommand's own one-line description, as `scale0 --help` shows it
    summary=$(sed -n '1 s/^\(.\)/\L\1/p' <<<"$help")
  fi
  {
    if grep -q '^Examples:$' <<<"$help"; then
      # One command a line, in constant width: neither stretched to the margin nor hyphenated.
      printf '[<EXAMPLES]\n.na\n.nh\n[>EXAMPLES]\n.ad\n.hy\n'
    fi
    echo "[SEE ALSO]"
    others=()
    for other in "${pages[@]}"; do [ "$other" = "$name" ] || others+=("$other"); done
    for i in "${!others[@]}"; do
      sep=,
      [ "$i" -eq $((${#others[@]} - 1)) ] && sep=
      printf '.BR %s (1)%s\n' "${others[$i]//-/\\-}" "$sep"
    done
    printf '.PP\nThe operator documentation is in\n.IR /usr/share/doc/scale0/ ,\n'
    printf 'starting with README.md and operations.md.\n'
  } >"$work/$name.h2m"
  help2man --locale=C.UTF-8 --no-info --section=1 --no-discard-stderr --version-string="$version" \
    --name="$summary" --source="Scale0 $version" --manual="Scale0 manual" \
    --include="$work/$name.h2m" --output="$outdir/$name.1" "$work/$name"
done
