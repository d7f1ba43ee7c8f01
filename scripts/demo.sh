#!/usr/bin/env bash
# make demo: a fresh lab vCenter, then the headless runbooks against it, each leaving an HTML change record.
# It always uses the lab: govc's variables are cleared so that a configured real vCenter is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
unset GOVC_URL GOVC_USERNAME GOVC_PASSWORD GOVC_INSECURE GOVC_TLS_CA_CERTS RUNBOOK_PASSWORD_FILE
RB=.venv/bin/runbook

$RB lab stop >/dev/null 2>&1 || true          # start from the scenario, so the demo can be repeated
echo "== starting the lab vCenter (first time: builds it, about a minute)"
$RB lab start >/dev/null
$RB lab status

reports=()
records=()
run() {
  echo
  echo "== runbook $*"
  out=$($RB "$@" | tee /dev/stderr) || { echo "demo: 'runbook $*' failed" >&2; exit 1; }
  reports+=("$(sed -n 's/^report: //p' <<<"$out")")
  records+=("$(sed -n 's/^record: //p' <<<"$out")")
}
run inventory --change-id DEMO-inventory
run migrate --vm web-01 --host esx-02.lab.local --change-id DEMO-vmotion
run migrate --vm app-02 --datastore nfs-02 --disk-format thick --change-id DEMO-svmotion
# a wave: empty esx-01 (its 3 VMs left after the first move) onto the other hosts, one record for all
run evacuate --host esx-01.lab.local --change-id DEMO-evacuate
wave_record=${records[-1]}

echo
echo "== change records"
for r in "${reports[@]}"; do echo "  $r"; done
echo "  index: $(pwd)/reports/index.html"
echo
echo "== the wave (evacuate esx-01.lab.local)"
echo "  report: ${reports[-1]}"
echo "  record: ${wave_record}"
.venv/bin/python - "$wave_record" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"  {data['outcome']}: {data['summary']}")
for m in data["moves"]:
    outage = f"{m['outage_ms']:g} ms" if m.get("outage_ms") is not None else "-"
    print(f"    {m['status']:<11} {m['vm']:<10} -> {m['target_host'] or m['target_datastore'] or '-'}  outage {outage}")
PY
echo
echo "The lab is still running for you to explore (jupyter lab notebooks/); stop it with: $RB lab stop"
