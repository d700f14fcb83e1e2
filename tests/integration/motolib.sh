# A real S3-compatible server for tests (sourced after tests/cli/lib.sh, not
# run: tests/run.sh skips it): moto_server on 127.0.0.1, a free port, with
# signature checking on. The first three requests (unauthenticated,
# INITIAL_NO_AUTH_ACTION_COUNT=3) create an IAM user, its key and an
# allow-all policy; every request after them must be signed with that key.
#   moto_start NAME   start it (log in $T/moto.log), create the user and the
#                     bucket "otf", export AWS_ENDPOINT_URL_S3,
#                     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
#                     OTF_S3_QUERY_SLASH=raw; sets MOTO_PID and MOTO_EP.
#                     NAME prefixes its messages. Returns 1 on failure.
#   moto_stop         stop it (safe to call twice)
# The caller's EXIT trap should call moto_stop.

moto_start() {
  mname=$1
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "$mname: moto_server not found on PATH. These tests need moto's server"
    echo "  (Python: pip install 'moto[server]'); it is not a Debian package and"
    echo "  'make install-deps' does not install it."
    return 1
  fi
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  INITIAL_NO_AUTH_ACTION_COUNT=3 moto_server -H 127.0.0.1 -p "$mport" >"$T/moto.log" 2>&1 &
  MOTO_PID=$!
  MOTO_EP="http://127.0.0.1:$mport"
  mi=0
  until python3 -c "import socket; socket.create_connection(('127.0.0.1',$mport),1)" 2>/dev/null; do
    mi=$((mi + 1))
    if [ $mi -gt 150 ] || ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "$mname: moto_server did not start"; cat "$T/moto.log"; return 1
    fi
    sleep 0.2
  done
  # IAM user + key + policy (the three unauthenticated requests), then a
  # bucket created with the key (signed by botocore, which moto ships with).
  mkeys=$(python3 - "$MOTO_EP" <<'PY'
import sys, urllib.request, urllib.parse, re
ep = sys.argv[1]
hdr = {"Authorization": "AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"}
def iam(params):
    params["Version"] = "2010-05-08"
    req = urllib.request.Request(ep, data=urllib.parse.urlencode(params).encode(), headers=hdr)
    return urllib.request.urlopen(req, timeout=30).read().decode()
iam({"Action": "CreateUser", "UserName": "otf"})
x = iam({"Action": "CreateAccessKey", "UserName": "otf"})
iam({"Action": "PutUserPolicy", "UserName": "otf", "PolicyName": "all",
     "PolicyDocument": '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'})
ak = re.search("<AccessKeyId>(.*?)</AccessKeyId>", x).group(1)
sk = re.search("<SecretAccessKey>(.*?)</SecretAccessKey>", x).group(1)
import boto3
boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
             region_name="us-east-1").create_bucket(Bucket="otf")
print(ak, sk)
PY
  ) || { echo "$mname: IAM/bucket set-up failed"; return 1; }
  # shellcheck disable=SC2086
  set -- $mkeys
  export AWS_ENDPOINT_URL_S3="$MOTO_EP" AWS_ACCESS_KEY_ID="$1" AWS_SECRET_ACCESS_KEY="$2" AWS_REGION=us-east-1
  # moto checks signatures over the query with %2F decoded; see storage/s3.c.
  export OTF_S3_QUERY_SLASH=raw
  unset AWS_ENDPOINT_URL AWS_PROFILE AWS_SESSION_TOKEN
  return 0
}

moto_stop() {
  [ -n "${MOTO_PID:-}" ] || return 0
  kill "$MOTO_PID" 2>/dev/null
  wait "$MOTO_PID" 2>/dev/null
  MOTO_PID=""
}
