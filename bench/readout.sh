#!/usr/bin/env bash
# bench/readout.sh — the read side on MariaDB/MySQL (issue 5, item 8).
#
# Usage: bench/readout.sh [--quick] [MARIADB_URL]
#
#   MARIADB_URL   server URL without a database, default mysql://root@127.0.0.1:3306.
#                 A fresh database velt_bench_readout_<pid> is created and dropped at exit.
#   --quick       small sizes (36 000-sample session, 100 000-sample export), for CI.
#   BENCH_PROFILE release (default) or debug: which build of velt to measure.
#
# What it does:
#   1. builds velt (cargo build --bin velt, release by default) and starts it on free
#      ports (HTTP and MQTT on port 0, the HTTP port read from its log) with
#      VELT_DATABASE_URL pointing at the fresh database;
#   2. registers a user, pairs two devices, starts a session bound to device A (REST);
#   3. loads, by direct SQL (INSERT … SELECT over a cross join of digits, seconds not
#      minutes): a one-hour 100 Hz session of 360 000 samples of device A, attributed to
#      the session and inside its time span (as MQTT ingest stores it), and 1 000 000
#      samples of device B;
#   4. times with curl: the session downsampled (?points=1000, 3 runs), its summary, the
#      device downsampled (?points=1000), the session's CSV export, and a full CSV
#      export of device B's 1 M samples,
#      sampling the server's VmRSS from /proc/PID/status before, during (every 20 ms) and
#      after the export;
#   5. prints the figures and ratios and writes bench/out/readout.json.
#
# Needs: cargo, curl, jq, the mysql client. Exits non-zero if any request fails or the
# export is not exactly header + every row.
set -euo pipefail

QUICK=0
URL=""
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) URL="$arg" ;;
    esac
done
URL="${URL:-mysql://root@127.0.0.1:3306}"
URL="${URL%/}"
PROFILE="${BENCH_PROFILE:-release}"

if [[ $QUICK == 1 ]]; then
    N_SESSION=36000
    N_EXPORT=100000
else
    N_SESSION=360000
    N_EXPORT=1000000
fi
POINTS=1000
T0=1753722000000000   # 2025-07-28T17:00:00Z, µs
PERIOD=10000          # 100 Hz

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/bench/out"
mkdir -p "$OUT_DIR"

for tool in cargo curl jq mysql; do
    command -v "$tool" >/dev/null || { echo "readout.sh: $tool not found" >&2; exit 2; }
done

# mysql://user[:password]@host[:port]
re='^(mysql|mariadb)://([^:@/]+)(:([^@/]*))?@([^:/]+)(:([0-9]+))?$'
if [[ ! $URL =~ $re ]]; then
    echo "readout.sh: expected mysql://user[:password]@host[:port], got $URL" >&2
    exit 2
fi
DB_USER="${BASH_REMATCH[2]}"
DB_PASS="${BASH_REMATCH[4]}"
DB_HOST="${BASH_REMATCH[5]}"
DB_PORT="${BASH_REMATCH[7]:-3306}"
DB_NAME="velt_bench_readout_$$"

sql() {
    MYSQL_PWD="$DB_PASS" mysql --batch --skip-column-names -u "$DB_USER" -h "$DB_HOST" -P "$DB_PORT" "$@"
}

WORK="$(mktemp -d)"
VELT_PID=""
cleanup() {
    if [[ -n $VELT_PID ]] && kill -0 "$VELT_PID" 2>/dev/null; then
        kill -TERM "$VELT_PID" 2>/dev/null || true
        wait "$VELT_PID" 2>/dev/null || true
    fi
    sql -e "DROP DATABASE IF EXISTS \`$DB_NAME\`" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

echo "== building velt ($PROFILE)"
if [[ $PROFILE == release ]]; then
    (cd "$ROOT" && cargo build --release --bin velt --quiet)
    BIN="$ROOT/target/release/velt"
else
    (cd "$ROOT" && cargo build --bin velt --quiet)
    BIN="$ROOT/target/debug/velt"
fi

echo "== starting velt on database $DB_NAME"
VELT_DATABASE_URL="$URL/$DB_NAME" \
VELT_DATA_DIR="$WORK/data" \
VELT_HTTP_LISTEN=127.0.0.1:0 \
VELT_MQTT_LISTEN=127.0.0.1:0 \
VELT_JWT_SECRET="bench-readout-secret-0123456789abcdef" \
VELT_ACCESS_TOKEN_TTL=2h \
NO_COLOR=1 RUST_LOG=velt=info,warn \
    "$BIN" >"$WORK/velt.log" 2>&1 &
VELT_PID=$!

ADDR=""
for _ in $(seq 300); do
    ADDR="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/velt.log" | grep 'REST API listening' | grep -o 'addr=[0-9.:]*' | cut -d= -f2 || true)"
    [[ -n $ADDR ]] && break
    kill -0 "$VELT_PID" 2>/dev/null || { cat "$WORK/velt.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $ADDR ]] || { echo "velt did not start" >&2; cat "$WORK/velt.log" >&2; exit 1; }
API="http://$ADDR/api/v1"
echo "   listening on $ADDR (pid $VELT_PID)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$VELT_PID/status"; }

post() { curl -sf -X POST -H 'content-type: application/json' ${TOKEN:+-H "authorization: Bearer $TOKEN"} -d "$2" "$API$1"; }

TOKEN=""
TOKEN="$(post /auth/register '{"email":"bench@example.com","password":"s3cret-pass","username":"bench"}' | jq -r .access_token)"
DEVICE_A="$(post /devices '{"hardware_id":"00000000000000a1","alias":"session"}' | jq -r .id)"
DEVICE_B="$(post /devices '{"hardware_id":"00000000000000b2","alias":"export"}' | jq -r .id)"
SESSION="$(post /sessions "{\"device_id\":$DEVICE_A}" | jq -r .id)"

echo "== loading $N_SESSION session samples and $N_EXPORT export samples by SQL"
load_start=$(date +%s.%N)
SESSION_END=$((T0 + (N_SESSION - 1) * PERIOD))
sql "$DB_NAME" <<SQL
CREATE TABLE bench_digits (n INT NOT NULL PRIMARY KEY);
INSERT INTO bench_digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
CREATE TABLE bench_numbers (n INT NOT NULL PRIMARY KEY)
    SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n + 10000 * e.n + 100000 * f.n AS n
    FROM bench_digits a, bench_digits b, bench_digits c, bench_digits d, bench_digits e, bench_digits f;
INSERT INTO telemetry (device_id, ts, session_id, ax, ay, az, gx, gy, gz)
    SELECT $DEVICE_A, $T0 + n * $PERIOD, $SESSION,
           0.5 * SIN(n / 16.0), 0.2, 9.81 + 0.3 * COS(n / 8.0), 0.1, -0.05 * SIN(n / 100.0), 0.02
    FROM bench_numbers WHERE n < $N_SESSION;
INSERT INTO telemetry (device_id, ts, session_id, ax, ay, az, gx, gy, gz)
    SELECT $DEVICE_B, $T0 + n * $PERIOD, NULL,
           0.5 * SIN(n / 16.0), 0.2, 9.81 + 0.3 * COS(n / 8.0), 0.1, -0.05 * SIN(n / 100.0), 0.02
    FROM bench_numbers WHERE n < $N_EXPORT;
UPDATE sessions SET start_time = $T0, end_time = $SESSION_END WHERE id = $SESSION;
DROP TABLE bench_numbers;
DROP TABLE bench_digits;
ANALYZE TABLE telemetry;
SQL
load_s=$(echo "$(date +%s.%N) - $load_start" | bc -l)
printf '   loaded in %.1f s\n' "$load_s"

# time_get PATH OUTFILE → "seconds bytes"; exits on a failed request.
time_get() {
    local result
    if ! result="$(curl -sf -o "$2" -w '%{time_total} %{size_download}' -H "authorization: Bearer $TOKEN" "$API$1")"; then
        echo "readout.sh: GET $1 failed" >&2
        kill -TERM $$
        exit 1
    fi
    echo "$result"
}

echo "== downsample: session of $N_SESSION samples, points=$POINTS"
DOWN_TIMES=()
for run in 1 2 3; do
    read -r t bytes < <(time_get "/sessions/$SESSION/telemetry?points=$POINTS" "$WORK/down.json")
    DOWN_TIMES+=("$t")
    echo "   run $run: ${t}s, $bytes bytes"
done
DOWN_BUCKETS="$(jq '.buckets | length' "$WORK/down.json")"
DOWN_BUCKET_US="$(jq '.bucket_us' "$WORK/down.json")"
DOWN_COUNT="$(jq '[.buckets[].count] | add' "$WORK/down.json")"
[[ $DOWN_COUNT == "$N_SESSION" ]] || { echo "buckets hold $DOWN_COUNT samples, expected $N_SESSION" >&2; exit 1; }
DOWN_BEST="$(printf '%s\n' "${DOWN_TIMES[@]}" | sort -g | head -1)"

read -r SUMMARY_S _ < <(time_get "/sessions/$SESSION/summary" "$WORK/summary.json")
echo "   summary: ${SUMMARY_S}s ($(jq -c '{count, effective_rate_hz, gaps}' "$WORK/summary.json"))"

read -r DEVICE_DOWN_S _ < <(time_get "/devices/$DEVICE_B/telemetry?points=$POINTS" "$WORK/device-down.json")
echo "   device of $N_EXPORT samples, points=$POINTS: ${DEVICE_DOWN_S}s"

read -r SESSION_EXPORT_S SESSION_EXPORT_BYTES < <(time_get "/sessions/$SESSION/telemetry?format=csv" "$WORK/session.csv")
SESSION_EXPORT_LINES="$(wc -l <"$WORK/session.csv")"
[[ $SESSION_EXPORT_LINES == $((N_SESSION + 1)) ]] || { echo "session export has $SESSION_EXPORT_LINES lines" >&2; exit 1; }
echo "   session CSV export (two-index union, keyset pages): ${SESSION_EXPORT_S}s, $SESSION_EXPORT_BYTES bytes"

echo "== CSV export: $N_EXPORT samples"
RSS_BEFORE="$(rss_kib)"
: >"$WORK/rss"
(
    while kill -0 "$VELT_PID" 2>/dev/null; do
        rss_kib >>"$WORK/rss" || true
        sleep 0.02
    done
) &
SAMPLER=$!
read -r EXPORT_S EXPORT_BYTES < <(time_get "/devices/$DEVICE_B/telemetry?format=csv" "$WORK/export.csv")
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
RSS_AFTER="$(rss_kib)"
RSS_PEAK="$(sort -n "$WORK/rss" | tail -1)"
RSS_SAMPLES="$(wc -l <"$WORK/rss")"
EXPORT_LINES="$(wc -l <"$WORK/export.csv")"
[[ $EXPORT_LINES == $((N_EXPORT + 1)) ]] || { echo "export has $EXPORT_LINES lines, expected $((N_EXPORT + 1))" >&2; exit 1; }
head -2 "$WORK/export.csv" | sed 's/^/   | /'

ratio() { echo "scale=6; $1" | bc -l; }
EXPORT_ROWS_PER_S="$(ratio "$N_EXPORT / $EXPORT_S")"
EXPORT_MIB_PER_S="$(ratio "$EXPORT_BYTES / 1048576 / $EXPORT_S")"
RSS_GROWTH_MIB="$(ratio "($RSS_PEAK - $RSS_BEFORE) / 1024")"
RSS_VS_EXPORT="$(ratio "($RSS_PEAK - $RSS_BEFORE) * 1024 / $EXPORT_BYTES")"
REDUCTION="$(ratio "$N_SESSION / $DOWN_BUCKETS")"
DOWN_SAMPLES_PER_S="$(ratio "$N_SESSION / $DOWN_BEST")"

echo
echo "== results ($( [[ $QUICK == 1 ]] && echo quick || echo full ), $PROFILE build, $(sql -e 'SELECT VERSION()'))"
printf '   downsample  %d samples -> %d buckets of %d us (%.0fx fewer): best %.3f s (runs: %s), %.2f M samples/s\n' \
    "$N_SESSION" "$DOWN_BUCKETS" "$DOWN_BUCKET_US" "$REDUCTION" "$DOWN_BEST" "${DOWN_TIMES[*]}" "$(ratio "$DOWN_SAMPLES_PER_S / 1000000")"
printf '   summary     %d samples: %.3f s\n' "$N_SESSION" "$SUMMARY_S"
printf '   downsample  device, %d samples: %.3f s\n' "$N_EXPORT" "$DEVICE_DOWN_S"
printf '   session CSV %d rows in %.2f s: %.0f rows/s\n' "$N_SESSION" "$SESSION_EXPORT_S" "$(ratio "$N_SESSION / $SESSION_EXPORT_S")"
printf '   CSV export  %d rows, %.1f MiB in %.2f s: %.0f rows/s, %.1f MiB/s\n' \
    "$N_EXPORT" "$(ratio "$EXPORT_BYTES / 1048576")" "$EXPORT_S" "$EXPORT_ROWS_PER_S" "$EXPORT_MIB_PER_S"
printf '   server RSS  before %.1f MiB, peak during %.1f MiB (+%.1f MiB, %.4f of the export size; %d samples), after %.1f MiB\n' \
    "$(ratio "$RSS_BEFORE / 1024")" "$(ratio "$RSS_PEAK / 1024")" "$RSS_GROWTH_MIB" "$RSS_VS_EXPORT" "$RSS_SAMPLES" "$(ratio "$RSS_AFTER / 1024")"

jq -n \
    --arg mode "$( [[ $QUICK == 1 ]] && echo quick || echo full )" \
    --arg profile "$PROFILE" \
    --arg server "$(sql -e 'SELECT VERSION()')" \
    --argjson load_s "$load_s" \
    --argjson session_samples "$N_SESSION" \
    --argjson points "$POINTS" \
    --argjson buckets "$DOWN_BUCKETS" \
    --argjson bucket_us "$DOWN_BUCKET_US" \
    --argjson down_runs "[$(IFS=,; echo "${DOWN_TIMES[*]}")]" \
    --argjson down_best "$DOWN_BEST" \
    --argjson summary_s "$SUMMARY_S" \
    --argjson device_down_s "$DEVICE_DOWN_S" \
    --argjson session_export_s "$SESSION_EXPORT_S" \
    --argjson session_export_bytes "$SESSION_EXPORT_BYTES" \
    --argjson export_rows "$N_EXPORT" \
    --argjson export_bytes "$EXPORT_BYTES" \
    --argjson export_s "$EXPORT_S" \
    --argjson rows_per_s "$EXPORT_ROWS_PER_S" \
    --argjson mib_per_s "$EXPORT_MIB_PER_S" \
    --argjson rss_before "$RSS_BEFORE" \
    --argjson rss_peak "$RSS_PEAK" \
    --argjson rss_after "$RSS_AFTER" \
    --argjson rss_samples "$RSS_SAMPLES" \
    --argjson rss_growth_mib "$RSS_GROWTH_MIB" \
    '{
        mode: $mode, profile: $profile, database: $server, load_s: $load_s,
        downsample: {samples: $session_samples, points: $points, buckets: $buckets,
                     bucket_us: $bucket_us, runs_s: $down_runs, best_s: $down_best,
                     reduction: ($session_samples / $buckets)},
        session_summary_s: $summary_s,
        session_csv_export: {rows: $session_samples, bytes: $session_export_bytes, s: $session_export_s},
        device_downsample: {samples: $export_rows, points: $points, s: $device_down_s},
        csv_export: {rows: $export_rows, bytes: $export_bytes, s: $export_s,
                     rows_per_s: $rows_per_s, mib_per_s: $mib_per_s},
        server_rss_kib: {before: $rss_before, peak_during_export: $rss_peak,
                         after: $rss_after, samples: $rss_samples,
                         growth_mib: $rss_growth_mib}
    }' >"$OUT_DIR/readout.json"
echo "   wrote bench/out/readout.json"
