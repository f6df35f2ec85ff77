#!/usr/bin/env bash
# Loads a `sockrewind-analyze export --to clickhouse --out DIR` directory into ClickHouse:
# creates the tables from the analyzer's own DDL (`export --to clickhouse --ddl`, IF NOT EXISTS)
# and inserts every DIR/<table>.tsv with clickhouse-client. The export's schema version
# (DIR/sockrewind_schema.tsv) must be the DDL's. README "Fleet: ClickHouse".
#
#   scripts/load_clickhouse.sh [--host H] [--port P] [--database DB] [--analyze BIN] DIR
set -euo pipefail
host=127.0.0.1 port=9000 database=default analyze=sockrewind-analyze
usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
while (($#)); do
  case $1 in
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    --analyze) analyze=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) break ;;
  esac
done
(($# == 1)) || usage
dir=$1
client=(clickhouse-client --host "$host" --port "$port")
ddl=$("$analyze" export --to clickhouse --ddl)
want=$(sed -n '1s/^-- sockrewind ClickHouse schema \([0-9][0-9]*\).*/\1/p' <<<"$ddl")
have=$(cut -f1 "$dir/sockrewind_schema.tsv")
if [[ -z $want || $want != "$have" ]]; then
  echo "load_clickhouse.sh: $dir is ClickHouse schema '$have', $analyze writes '$want'" >&2
  exit 1
fi
if [[ $database != default ]]; then
  "${client[@]}" --query "CREATE DATABASE IF NOT EXISTS $database"
fi
"${client[@]}" --database "$database" --multiquery <<<"$ddl"
for table in $(sed -n 's/^CREATE TABLE IF NOT EXISTS \([a-z_]*\).*/\1/p' <<<"$ddl"); do
  [[ -s $dir/$table.tsv ]] || continue # clickhouse-client refuses an empty INSERT
  # Blocks of 256 Ki rows: a day of a busy host loads within the default memory limits.
  "${client[@]}" --database "$database" --max_insert_block_size=262144 \
    --query "INSERT INTO $table FORMAT TabSeparated" \
    <"$dir/$table.tsv"
done
