#!/usr/bin/env bash
# The white paper's network, by hand: three partnerships, each a separate `discnode serve` process,
# set up with exactly the commands their administrators would type. Needs `discnode` on PATH.
#
#   A (Northtown) <-> B (Midcity) <-> C (Southport)
#
# A sees B; B sees A and C; C sees B; A never sees C.
set -euo pipefail
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

dn() { local node=$1; shift; discnode --home "$work/$node" "$@"; }
# The three nodes' ports (ABC_PORTS="pa pb pc" to choose others, as the tests do on a shared machine).
read -r PA PB PC <<< "${ABC_PORTS:-28441 28442 28443}"

# 1. Each partnership creates its node once. The node ID is what administrators read to each other.
dn A init --name "Northtown BCRP" --port "$PA" >/dev/null
dn B init --name "Midcity BCRP"   --port "$PB" >/dev/null
dn C init --name "Southport BCRP" --port "$PC" >/dev/null
id() { dn "$1" id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])'; }
A=$(id A); B=$(id B); C=$(id C)

# 2. Each records a couple of its own profiles (one kept local-only: it never leaves the node).
dn A profile add --first-name Ann  --last-name Archer --gender female --ethnicity IC1 --build slim >/dev/null
dn A profile add --first-name Al   --last-name Amber  --gender male --ethnicity IC2 --build heavy --local-only >/dev/null
dn B profile add --first-name Ben  --last-name Baker  --gender male --ethnicity IC3 --build medium >/dev/null
dn C profile add --first-name Cara --last-name Cole   --gender female --ethnicity IC4 --build athletic >/dev/null

# 3. Each runs its daemon (in real life: a service on the partnership's own server).
for n in A B C; do
  discnode --home "$work/$n" serve --no-advertise 2>"$work/$n.log" &
  pids+=($!)
done
for n in A B C; do  # each says "serving" once it listens (up to 30 s on a busy machine)
  for _ in $(seq 300); do grep -q serving "$work/$n.log" && break; sleep 0.1; done
done

# 4. Agreements. B's administrator phoned A's and C's to get their node IDs; `--expect` checks them.
dn A peer add "https://127.0.0.1:$PB" --expect "$B"   # A offers to B
dn B peer accept "$A"                                  # B accepts: A<->B active
dn B peer add "https://127.0.0.1:$PC" --expect "$C"   # B offers to C
dn C peer accept "$B"                                  # C accepts: B<->C active

# 5. Each administrator's Dataview.
for n in A B C; do dn $n search; done

# 6. Either side can withdraw at once: C revokes, and B's next search no longer includes C.
dn C peer revoke "$B"
dn B search
dn C audit --limit 10
