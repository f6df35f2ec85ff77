#!/usr/bin/env bash
# Drives the real `sockrewind-analyze replay` inside tmux (80x24) on samples/*.sqlite: stepping,
# sorting, filtering, following a socket, jumping from a finding, help, resize, colours and
# NO_COLOR, and that the terminal is restored after q, SIGTERM and ^C (stty state, alternate
# screen left, cursor shown). Polls capture-pane with a timeout, never fixed sleeps.
# Usage: test_replay_tmux.sh ANALYZE_BIN SAMPLES_DIR [SCREEN_OUT]
# Exit 0 pass, 1 fail, 4 skipped (tmux missing).
set -uo pipefail

ANALYZE=${1:?analyze binary}
SAMPLES=${2:?samples dir}
SCREEN_OUT=${3:-}
if ! command -v tmux >/dev/null 2>&1; then
  echo "SKIP: tmux is not installed (tests/scripts/install-deps.sh installs it)"
  exit 4
fi
FILE="$SAMPLES/accept-queue-backlog.sqlite"
WORK=$(mktemp -d /tmp/sockrewind-replay-XXXXXX)
SOCK="sockrewind-replay-$$"
T=(tmux -L "$SOCK" -f /dev/null)
cleanup() {
  "${T[@]}" kill-server >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
failures=0
checks=0

fail() {
  echo "FAIL: $*"
  echo "---- pane ----"
  "${T[@]}" capture-pane -p -t replay 2>/dev/null
  echo "--------------"
  failures=$((failures + 1))
}

ok() { checks=$((checks + 1)); }

pane() { "${T[@]}" capture-pane -p -t replay; }

# wait_for REGEX [SECONDS]: polls the pane until a line matches.
wait_for() {
  local re=$1 limit=${2:-15} start=$SECONDS
  while ((SECONDS - start < limit)); do
    if pane | grep -qE -- "$re"; then
      ok
      return 0
    fi
    sleep 0.05
  done
  fail "timed out waiting for /$re/"
  return 1
}

# line N (0-based) of the pane.
line() { pane | sed -n "$(($1 + 1))p"; }

expect_line() { # N REGEX
  local l
  l=$(line "$1")
  if [[ $l =~ $2 ]]; then ok; else fail "line $1 '$l' does not match /$2/"; fi
}

fmt() { "${T[@]}" display -p -t replay "$1"; }

# start ENV...: runs replay in a new 80x24 session; the pane's shell records the tty state
# before and after and the exit status, then waits. With ERR_TO set, replay's stderr goes to
# that file.
start() {
  "${T[@]}" kill-server >/dev/null 2>&1
  local redirect=""
  [[ -n ${ERR_TO:-} ]] && redirect="2>\"$ERR_TO\""
  cat >"$WORK/pane.sh" <<EOF
trap ':' INT # ^C reaches replay; this shell lives on to record the tty state
stty -g >"$WORK/stty.before"
env $* sh -c 'echo \$\$ >"$WORK/pid"; exec "$ANALYZE" replay "$FILE" $redirect'
echo "EXIT=\$?"
stty -g >"$WORK/stty.after"
echo DONE
exec sleep 600
EOF
  rm -f "$WORK/pid" "$WORK/stty.before" "$WORK/stty.after"
  "${T[@]}" new-session -d -s replay -x 80 -y 24 "bash $WORK/pane.sh"
}

# restored EXIT_CODE: the program ended with that status and left the terminal as it found it.
restored() {
  wait_for "^EXIT=$1\$" || return
  wait_for "^DONE\$" || return
  if cmp -s "$WORK/stty.before" "$WORK/stty.after"; then ok; else fail "stty state changed"; fi
  [[ $(fmt '#{alternate_on}') == 0 ]] && ok || fail "still in the alternate screen"
  [[ $(fmt '#{cursor_flag}') == 1 ]] && ok || fail "cursor left hidden"
}

key() { "${T[@]}" send-keys -t replay "$@"; }

# --- the first screen, stepping (progress forced on, stderr kept apart: see the findings)
ERR_TO="$WORK/err" start SOCKREWIND_PROGRESS=1
wait_for "snapshot 1/6"
[[ $(fmt '#{alternate_on}') == 1 ]] && ok || fail "not in the alternate screen"
expect_line 0 "^host vm  2026-11-22T02:53:18.724Z  snapshot 1/6  sockets 14"
expect_line 1 "^changes: first snapshot"
expect_line 3 '^\[#-+\]$'
expect_line 4 "^Netid State +Recv-Q Send-Q Local Address:Port Peer Address:Port +Process"
expect_line 5 "^tcp +LISTEN +5 +4 127\.0\.0\.1:7102 +0\.0\.0\.0:\* +test_lab\("
expect_line 23 "n/p:step .*q:quit"
key n
wait_for "snapshot 2/6"
expect_line 1 "^changes: \+0 new, -0 gone; .*\+[0-9]+"
expect_line 3 '^\[-+#-+\]$'
key p
wait_for "snapshot 1/6"
key G
wait_for "snapshot 6/6"
expect_line 3 '^\[-+#\]$'
key g
wait_for "snapshot 1/6"
# jump to a time and to a number
key t
wait_for "^jump to"
key "2026-11-22T02:53:21Z" Enter
wait_for "snapshot 3/6"
key t
wait_for "^jump to"
key 5 Enter
wait_for "snapshot 5/6"
# play: it advances on its own to the end and pauses
key Space
wait_for "PLAYING"
wait_for "snapshot 6/6" 10
wait_for "end of the series: paused" 10
key g
wait_for "snapshot 1/6"

# --- sorting
key s
wait_for "^sort Recv-Q"
expect_line 5 "^tcp +LISTEN +5"
key s
wait_for "^sort Send-Q"
expect_line 5 "^tcp +LISTEN +5 +4"
expect_line 6 "^tcp +SYN-SENT +0 +1"
key r
wait_for "^sort Send-Q \(reversed\)"
expect_line 5 "^tcp +ESTAB +0 +0"
key r s s s s
wait_for "^sort ss "

# --- filtering
key / "state:syn-sent" Enter
wait_for "filter state:SYN-SENT"
expect_line 0 "sockets 14 \(shown 3\)"
[[ $(pane | sed -n '6,23p' | grep -c "SYN-SENT") == 3 ]] && ok || fail "3 SYN-SENT rows expected"
[[ $(pane | sed -n '6,23p' | grep -cE "ESTAB|LISTEN") == 0 ]] && ok || fail "filter let others in"
key / "port:59906" Enter
wait_for "shown 2\)"
key / "port:99999" Enter
wait_for "bad port"
key c
wait_for "filter none"
key / "test_lab" Enter
wait_for "shown 9\)"
key c
wait_for "filter none"

# --- following a socket: the listener over the whole series
key / "state:listen" Enter
wait_for "shown 1\)"
key Enter
wait_for "^follow tcp 127\.0\.0\.1:7102 -> 0\.0\.0\.0:\*  cookie [0-9]+"
wait_for "seen in 6 of 6 snapshots"
[[ $(pane | grep -cE "^ +[1-6] 2026-11-22T02:53:[0-9.]+Z LISTEN +5 +4") == 6 ]] && ok \
  || fail "6 LISTEN rows expected in the follow view"
key End Enter # jump to the last point's snapshot
wait_for "snapshot 6/6"
key c g
wait_for "filter none"

# --- findings: the pane, the time bar, and jumping to a finding's snapshot and subject
key f
wait_for "^Findings \([1-9][0-9]*\)" 30
wait_for "accept_queue_backlog: "
# The detectors ran under the view without drawing their progress bar over it.
if grep -q "analyzing \[" "$WORK/err"; then fail "a progress bar was drawn under the view"; else ok; fi
expect_line 3 '!'
first=$(pane | grep -A1 "^Findings" | tail -1)
target=$(sed -E 's/^[a-z]+ +# +([0-9]+) .*/\1/' <<<"$first")
[[ $target =~ ^[0-9]+$ ]] && ok || fail "no snapshot number in '$first'"
key G
wait_for "snapshot 6/6"
key Enter
wait_for "fires at"
wait_for "snapshot $target/6"
wait_for "filter port:7102"
key f
wait_for "^n/p:step"

# --- help
key "?"
wait_for "replay: keys"
key x
wait_for "snapshot $target/6"

# --- resize: redraws to the new size, and back
"${T[@]}" resize-window -t replay -x 120 -y 40
wait_for '^\[[-#!]{118}\]$'
[[ $(pane | wc -l) == 40 ]] && ok || fail "not 40 lines after resize"
"${T[@]}" resize-window -t replay -x 80 -y 24
wait_for '^\[[-#!]{78}\]$'

# --- colours: present by default, none with NO_COLOR (capture -e shows the attributes)
if "${T[@]}" capture-pane -e -p -t replay | head -1 | grep -qE $'\e\\[(3|4)[0-7]m|\e\\[[0-9;]*(3|4)[0-7]m'; then
  ok
else
  fail "no colour in the header"
fi
key g
wait_for "snapshot 1/6"
if [[ -n $SCREEN_OUT ]]; then
  key c
  wait_for "filter none"
  key n
  wait_for "snapshot 2/6"
  pane >"$SCREEN_OUT"
fi

# --- q restores the terminal
key q
restored 0

start NO_COLOR=1
wait_for "snapshot 1/6"
if "${T[@]}" capture-pane -e -p -t replay | grep -qE $'\e\\[[0-9;]*(3|4)[0-7]m'; then
  fail "colour despite NO_COLOR"
else
  ok
fi
"${T[@]}" capture-pane -e -p -t replay | head -1 | grep -q $'\e\\[7m' && ok \
  || fail "NO_COLOR header not in reverse video"

# --- SIGTERM restores the terminal (exit status 143: killed by the signal)
kill -TERM "$(cat "$WORK/pid")"
restored 143

# --- ^C too (SIGINT through the terminal, status 130)
start
wait_for "snapshot 1/6"
key C-c
restored 130

# --- not a terminal, TERM=dumb, bad files (no tmux needed, but run here with the rest)
out=$("$ANALYZE" replay "$FILE" 2>&1 | cat)
rc=$("$ANALYZE" replay "$FILE" >/dev/null 2>&1 </dev/null; echo $?)
[[ $rc == 2 ]] && ok || fail "piped stdout: exit $rc, expected 2"
[[ $(wc -l <<<"$out") == 1 && $out == *'`show`'* && $out == *'`timeline`'* ]] && ok \
  || fail "piped stdout: '$out'"
start TERM=dumb
wait_for "^EXIT=2$"
wait_for "TERM is dumb"
printf 'not a database' >"$WORK/bad.sqlite"
rc=$("$ANALYZE" replay "$WORK/bad.sqlite" >/dev/null 2>&1; echo $?)
[[ $rc == 3 ]] && ok || fail "bad file: exit $rc, expected 3"
rc=$("$ANALYZE" replay "$WORK/missing.sqlite" >/dev/null 2>&1; echo $?)
[[ $rc == 3 ]] && ok || fail "missing file: exit $rc, expected 3"

echo "replay tmux: $checks checks passed, $failures failed"
((failures == 0))
