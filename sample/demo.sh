#!/usr/bin/env bash
# make demo: start the two sample backends, check sample/config.yaml, start
# bal as a daemon, send requests through it (round robin alternates the
# backends), show status and doctor, and stop everything this script started,
# even when a step fails. Usage: sample/demo.sh path/to/bal
set -euo pipefail

bal="$(cd "$(dirname "${1:?usage: sample/demo.sh path/to/bal}")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."
sample=sample
config="$sample/config.yaml"

# Use npm scripts when npm is there, the same script through node otherwise.
if command -v npm >/dev/null 2>&1; then
  backends() { npm --prefix "$sample" run --silent "$1"; }
else
  backends() { case "$1" in start:all) node "$sample/run.js" start 9000 9100 ;; stop) node "$sample/run.js" stop ;; esac; }
fi

# The demo never touches ~/.bal: it runs with a throw-away BAL_HOME.
demo_home="$(mktemp -d)"
export BAL_HOME="$demo_home"

bal_started=
cleanup() {
  status=$?
  if [ -n "$bal_started" ]; then
    echo
    echo "== bal stop"
    "$bal" stop --timeout 10s || true
  fi
  echo
  echo "== stopping the sample backends"
  backends stop || true
  rm -rf "$demo_home"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== $("$bal" --version)"
echo
echo "== starting the sample backends (npm run start:all)"
backends start:all

echo
for port in 9000 9100; do
  echo "== a request straight to backend $port"
  node -e '
    const http = require("http");
    http.get({ host: "127.0.0.1", port: Number(process.argv[1]), path: "/demo" }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => console.log(`X-Backend-Server: ${res.headers["x-backend-server"]}  message: ${JSON.parse(body).message}`));
    }).on("error", (e) => { console.error(e.message); process.exit(1); });
  ' "$port"
done

echo
echo "== bal check -c $config"
"$bal" check -c "$config"
echo
echo "== bal check --strict --json -c $config"
"$bal" check --strict --json -c "$config"

echo
echo "== bal start -d -c $config   (returns once bal listens, or prints why it cannot)"
"$bal" start -d -c "$config"
bal_started=1

port="$(sed -n 's/^port: *\([0-9]*\).*/\1/p' "$config")"
echo
echo "== six requests through bal (127.0.0.1:$port): round robin alternates the backends"
node -e '
  const http = require("http");
  const port = Number(process.argv[1]);
  let n = 0;
  const next = () => {
    if (n++ === 6) return;
    http.get({ host: "127.0.0.1", port, path: "/through-bal", agent: false }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => { console.log(`request ${n}: X-Backend-Server: ${res.headers["x-backend-server"]}`); next(); });
    }).on("error", (e) => { console.error(e.message); process.exit(1); });
  };
  next();
' "$port"

echo
echo "== bal status"
"$bal" status
echo
echo "== bal doctor --brief"
"$bal" doctor --brief || true
