#!/usr/bin/env bash
# Install genarc and show the main job end to end on a local repository:
# back up a sample tree, change it, run again, list, restore, compare and verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
GENARC="$PWD/.venv/bin/genarc"

demo=$(mktemp -d "${TMPDIR:-/tmp}/genarc-demo.XXXXXX")
export XDG_STATE_HOME="$demo/state"
mkdir -p "$demo/data/docs" "$demo/data/photos" "$demo/data/empty"
for i in $(seq 1 200); do printf 'note %s\n%.0s' "$i" $(seq 1 50) > "$demo/data/docs/note$i.txt"; done
head -c 3000000 /dev/urandom > "$demo/data/photos/holiday.raw"
ln -s docs/note1.txt "$demo/data/latest-note"
printf 'correct horse battery staple\n' > "$demo/password"
chmod 600 "$demo/password"
cat > "$demo/genarc.toml" <<TOML
[repository]
url = "$demo/repo"
password_file = "$demo/password"

[retention]
keep_days = 30
generation_days = 7
margin_days = 1

[jobs.demo]
sources = ["$demo/data"]
exclude = ["*.tmp"]
TOML
cfg=(--config "$demo/genarc.toml")

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step genarc init;                    "$GENARC" "${cfg[@]}" init
step genarc run;                     "$GENARC" "${cfg[@]}" run
echo "changed" >> "$demo/data/docs/note7.txt"; rm "$demo/data/docs/note8.txt"; echo new > "$demo/data/docs/new.txt"
step "genarc run   # after editing, deleting and adding a file"
"$GENARC" "${cfg[@]}" run
step genarc list;                    "$GENARC" "${cfg[@]}" list
step genarc ls demo "${demo#/}/data/docs/note7.txt"
"$GENARC" "${cfg[@]}" ls demo "${demo#/}/data/docs/note7.txt"
step genarc restore demo --target "$demo/restored"
"$GENARC" "${cfg[@]}" restore demo --target "$demo/restored"
step diff -r data restored/...;      diff -r "$demo/data" "$demo/restored${demo}/data" && echo "restored tree is identical"
step genarc restore demo --point 1 --target "$demo/first"
"$GENARC" "${cfg[@]}" restore demo --point 1 --target "$demo/first"
test -f "$demo/first${demo}/data/docs/note8.txt" && echo "point 1 still has the file deleted later"
step genarc verify --deep;           "$GENARC" "${cfg[@]}" verify --deep
printf '\nEverything is in %s (repository: %s/repo).\n' "$demo" "$demo"
