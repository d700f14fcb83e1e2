#!/bin/sh
# Storage throughput: a 1 GiB model folder uploaded to and downloaded from a
# local S3 server (moto_server on 127.0.0.1, signatures enforced) through
# `otfuse cp`, with wall time, throughput and peak RSS (/usr/bin/time -v).
#   sh bench/bench_storage.sh [OTFUSE] [SIZE_MIB]      (defaults build/otfuse, 1024)
# Not a test: prints the numbers. Needs moto_server and /usr/bin/time.
set -eu
OTFUSE=${1:-build/otfuse}
MIB=${2:-1024}
command -v moto_server >/dev/null 2>&1 || { echo "bench_storage: moto_server not found"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_storage: /usr/bin/time not found (apt-get install time)"; exit 1; }
T=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
INITIAL_NO_AUTH_ACTION_COUNT=3 moto_server -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null; rm -rf "$T"' EXIT
ep="http://127.0.0.1:$port"
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do sleep 0.2; done
keys=$(python3 - "$ep" <<'PY'
import sys, urllib.request, urllib.parse, re, boto3
ep = sys.argv[1]
hdr = {"Authorization": "AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"}
def iam(p):
    p["Version"] = "2010-05-08"
    return urllib.request.urlopen(urllib.request.Request(ep, data=urllib.parse.urlencode(p).encode(), headers=hdr)).read().decode()
iam({"Action": "CreateUser", "UserName": "bench"})
x = iam({"Action": "CreateAccessKey", "UserName": "bench"})
iam({"Action": "PutUserPolicy", "UserName": "bench", "PolicyName": "all",
     "PolicyDocument": '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'})
ak = re.search("<AccessKeyId>(.*?)</AccessKeyId>", x).group(1)
sk = re.search("<SecretAccessKey>(.*?)</SecretAccessKey>", x).group(1)
boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
             region_name="us-east-1").create_bucket(Bucket="bench")
print(ak, sk)
PY
)
set -- $keys
export AWS_ENDPOINT_URL_S3="$ep" AWS_ACCESS_KEY_ID="$1" AWS_SECRET_ACCESS_KEY="$2" AWS_REGION=us-east-1
export OTF_S3_QUERY_SLASH=raw OTFUSE_CACHE_DIR="$T/cache"
mkdir -p "$T/src"
head -c $((MIB * 1048576)) /dev/urandom >"$T/src/model.safetensors"
echo '{"model_type":"bench"}' >"$T/src/config.json"

run() { # label, then the command
  label=$1; shift
  /usr/bin/time -v "$@" >"$T/out" 2>"$T/time"
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$T/time")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time")
  usr=$(sed -n 's/.*User time (seconds): //p' "$T/time")
  sys=$(sed -n 's/.*System time (seconds): //p' "$T/time")
  echo "$label: $(cat "$T/out")"
  echo "$label: wall $wall, otfuse CPU ${usr} s user + ${sys} s system, peak RSS $((rss / 1024)) MiB"
}
tput() { awk -v m="$MIB" -v s="$1" 'BEGIN { printf "%.1f MiB/s", m / s }'; }

echo "bench_storage: $MIB MiB through otfuse cp against moto_server on loopback ($(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg))"
run upload "$OTFUSE" cp -q "$T/src" s3://bench/model/
up=$(sed -n 's/.*"publish_seconds":\([0-9.]*\).*/\1/p' "$T/out")
echo "upload: $(tput "$up") (S3 multipart, 16 MiB parts, SHA-256 + MD5 of each part)"
run download "$OTFUSE" cp -q s3://bench/model/ "$T/back"
down=$(sed -n 's/.*"fetch_seconds":\([0-9.]*\).*/\1/p' "$T/out")
echo "download: $(tput "$down") (into the cache, MD5/size/SHA-256 verified; the local copy to the destination is publish_seconds)"
cmp -s "$T/src/model.safetensors" "$T/back/model.safetensors" && echo "round trip: identical" || { echo "round trip: DIFFERS"; exit 1; }
