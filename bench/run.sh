#!/usr/bin/env bash
# bench/run.sh: bal against HAProxy and nginx on loopback, side by side.
#
# Installs what it needs through apt when missing (wrk, haproxy, nginx with
# its stream module, gnuplot), builds bal and the helpers under bench/, runs
# every workload against every target (interleaved, repeated), and writes
# bench/results/<date>.md, .csv and .svg. Progress goes to stderr; the table
# is printed on stdout at the end. Method: bench/README.md. Options: -h.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH=$PATH:/usr/sbin:/sbin

ALL_TARGETS=direct,bal-gnet,bal-std,haproxy,haproxy-splice,nginx
ALL_WORKLOADS=ka64,ka256,close,bulk,idle,startup,dns
DNS_TARGETS=direct,bal-gnet,bal-std,nginx # HAProxy has no UDP
TARGETS=$ALL_TARGETS
WORKLOADS=$ALL_WORKLOADS
DURATION=6     # seconds of measurement per wrk run
WARMUP=1       # seconds of unmeasured load before each wrk run
REPS=3
IDLE_N=5000    # idle connections held through the proxy
STARTS=5       # spawns per start-up measurement (median)
QUIET=2        # seconds to wait at most, before each run, for the machine to be quiet
OUTDIR=bench/results
INSTALL=1
BAL=${BAL:-bin/bal}
LOAD_CPU=0     # wrk, the nginx backend and the helpers
PROXY_CPU=1    # the proxy under test
BAL_PROCS=${BAL_GOMAXPROCS:-1}  # GOMAXPROCS for bal (1: one event loop on its one core)

usage() {
	cat <<EOF
Usage: bench/run.sh [options]

  -t LIST   targets, comma-separated (default: $ALL_TARGETS)
  -w LIST   workloads, comma-separated (default: $ALL_WORKLOADS)
  -d SEC    measured seconds per wrk run (default: $DURATION)
  -W SEC    warm-up seconds before each wrk run, not measured (default: $WARMUP)
  -r N      repetitions (default: $REPS)
  -n N      idle connections for the idle workload (default: $IDLE_N)
  -s N      spawns per start-up measurement (default: $STARTS)
  -q SEC    before each run, wait up to SEC for other load to drop below
            15 % of the machine (default: $QUIET; 0: do not wait)
  -o DIR    results directory (default: $OUTDIR)
  -I        do not install missing tools (fail instead)
  -h        this help

Targets: direct (wrk straight to one backend, the ceiling), bal-gnet, bal-std,
haproxy (mode tcp, round robin), haproxy-splice (the same with option
splice-auto), nginx (stream, round robin). Ratios need direct and haproxy in
the run. Workloads: ka64, ka256 (keep-alive, 128-byte responses, wrk -c64 or
-c256), close (a new connection per request), bulk (10 MiB responses, wrk
-c8), idle (RSS and fds per idle proxied connection), startup (spawn to first
response), dns (UDP: bench/dnsload, 16 sockets x 8 queries outstanding, to two
dnsmasq resolvers; targets direct, bal-gnet, bal-std, nginx). Environment: BAL (default bin/bal, built when missing),
BAL_GOMAXPROCS (default 1; bal stays pinned to one CPU), KEEP_WORK=1 keeps
bench/.work/run.* after a successful run.
EOF
}

while getopts "t:w:d:W:r:n:s:q:o:Ih" opt; do
	case $opt in
	t) TARGETS=$OPTARG ;;
	w) WORKLOADS=$OPTARG ;;
	d) DURATION=$OPTARG ;;
	W) WARMUP=$OPTARG ;;
	r) REPS=$OPTARG ;;
	n) IDLE_N=$OPTARG ;;
	s) STARTS=$OPTARG ;;
	q) QUIET=$OPTARG ;;
	o) OUTDIR=$OPTARG ;;
	I) INSTALL=0 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if (($# > 0)); then usage >&2; exit 2; fi

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# check_list NAME VALUE ALLOWED: every comma-separated item of VALUE is allowed.
check_list() {
	local item
	for item in ${2//,/ }; do
		[[ ",$3," == *",$item,"* ]] || die "unknown $1 '$item' (known: $3)"
	done
}
check_list target "$TARGETS" "$ALL_TARGETS"
check_list workload "$WORKLOADS" "$ALL_WORKLOADS"
for n in "$DURATION" "$WARMUP" "$REPS" "$IDLE_N" "$STARTS" "$QUIET"; do
	[[ $n =~ ^[0-9]+$ ]] || die "not a whole number: $n"
done
((DURATION > 0 && REPS > 0 && IDLE_N > 0 && STARTS > 0)) || die "-d, -r, -n and -s must be > 0"
(($(nproc) >= 2)) || die "needs 2 CPUs (load on CPU $LOAD_CPU, proxy on CPU $PROXY_CPU)"

# ---------------------------------------------------------------- processes
# Every long-lived process this script starts is in PIDS until it is stopped;
# the EXIT trap stops whatever is left, by PID, with its descendants.
PIDS=()
WORK=""

forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# running PID: the process exists and is not a zombie.
running() {
	local s
	s=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $s && $s != Z && $s != X ]]
}

# proc_tree PID: PID and its descendants, space-separated.
proc_tree() {
	local found=() queue=("$1") p f kids
	while ((${#queue[@]} > 0)); do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		found+=("$p")
		for f in /proc/"$p"/task/*/children; do
			[[ -r $f ]] || continue
			kids=()
			read -ra kids <"$f" || true
			queue+=("${kids[@]}")
		done
	done
	echo "${found[*]}"
}

# stop_tree PID: SIGTERM, up to 5 s, then SIGKILL to it and its descendants.
stop_tree() {
	local pid=$1 tree p i
	tree=$(proc_tree "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		running "$pid" || break
		sleep 0.05
	done
	# shellcheck disable=SC2086 # tree is a list of PIDs
	if running "$pid"; then kill -KILL $tree 2>/dev/null || true; fi
	wait "$pid" 2>/dev/null || true
	for p in $tree; do
		if [[ $p != "$pid" ]] && running "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
	done
	forget "$pid"
}

# spawn LOG CMD...: start CMD in the background; its PID is in SPAWNED.
spawn() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	SPAWNED=$!
	PIDS+=("$SPAWNED")
}

# run_to OUT CMD...: run CMD (in the background, so that a signal to this
# script is handled at once), stdout to OUT, stderr to the run log; its exit code.
run_to() {
	local out=$1 pid rc=0
	shift
	"$@" >"$out" 2>>"$WORK/stderr.log" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_tree "${PIDS[i]}" || true; done
	if [[ -n $WORK && -d $WORK ]]; then
		if ((rc == 0)) && [[ -z ${KEEP_WORK:-} ]]; then
			rm -rf "$WORK"
		else
			say "logs kept in $WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi

apt_install() {
	((INSTALL)) || die "missing: $* (run without -I to install them with apt-get)"
	say "installing with apt-get: $*"
	"${SUDO[@]}" apt-get update -qq >&2
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# nginx_stream_line: prints the load_module line our nginx stream config
# needs (empty when the module is built in); fails when there is no module.
nginx_stream_line() {
	local v mp
	v=$(nginx -V 2>&1)
	if [[ $v == *--with-stream=dynamic* ]]; then
		mp=$(sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p' <<<"$v")
		mp=${mp:-/usr/lib/nginx/modules}
		[[ -f $mp/ngx_stream_module.so ]] || return 1
		echo "load_module $mp/ngx_stream_module.so;"
	elif [[ " $v " =~ [[:space:]]--with-stream[[:space:]] ]]; then
		echo ""
	else
		return 1
	fi
}

ensure_tools() {
	local pkgs=()
	command -v wrk >/dev/null || pkgs+=(wrk)
	command -v haproxy >/dev/null || pkgs+=(haproxy)
	command -v nginx >/dev/null || pkgs+=(nginx)
	command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
	command -v ss >/dev/null || pkgs+=(iproute2)
	command -v taskset >/dev/null || pkgs+=(util-linux)
	command -v go >/dev/null || die "needs Go (go.mod's version) on PATH"
	if ((${#pkgs[@]} > 0)); then apt_install "${pkgs[@]}"; fi
	if [[ ",$WORKLOADS," == *,dns,* ]] && ! command -v dnsmasq >/dev/null; then apt_install dnsmasq-base; fi
	if ! nginx_stream_line >/dev/null; then apt_install libnginx-mod-stream; fi
	NGINX_STREAM=$(nginx_stream_line) || die "nginx has no stream module (nginx -V)"
}

build() {
	mkdir -p "$WORK/bin"
	if [[ ! -x $BAL ]]; then
		say "building $BAL"
		go build -trimpath -o "$BAL" ./cmd/bal
	fi
	local t
	for t in idleconns startup report dnsload; do go build -o "$WORK/bin/$t" "./bench/$t"; done
}

# free_port: a port on 127.0.0.1 that nothing uses over TCP or UDP, outside
# the ephemeral range; never one handed out before in this run.
USED_PORTS=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htuln "sport = :$p") ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return
		fi
	done
}

# ---------------------------------------------------------------- configs
write_backend() {
	local d=$WORK/backend
	mkdir -p "$d/logs" "$d/tmp" "$WORK/www"
	head -c 128 /dev/zero | tr '\0' 'x' >"$WORK/www/small"
	head -c $((10 * 1024 * 1024)) /dev/zero >"$WORK/www/bulk10m"
	chmod 755 "$WORK" "$WORK/www"
	chmod 644 "$WORK/www/small" "$WORK/www/bulk10m"
	cat >"$d/nginx.conf" <<EOF
# The two backends: one nginx worker serving both ports (pinned to CPU $LOAD_CPU).
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 16000; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    default_type application/octet-stream;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$B1 backlog=4096;
        listen 127.0.0.1:$B2 backlog=4096;
        root $WORK/www;
    }
}
EOF
}

# write_target TARGET PORT: the target's config under $WORK/TARGET.
write_target() {
	local t=$1 port=$2 d=$WORK/$1
	mkdir -p "$d"
	case $t in
	bal-gnet | bal-std)
		cat >"$d/config.yaml" <<EOF
mode: "advanced"
port: $port
bind_address: "127.0.0.1"
method: "round_robin"
log_level: "warn"
runtime:
  engine: "${t#bal-}"
  max_concurrent_connections: 8000
  connection_idle_timeout_ms: 600000
  tcp_backlog: 4096
  drain_timeout_ms: 0
backends:
  - host: "127.0.0.1"
    port: $B1
  - host: "127.0.0.1"
    port: $B2
EOF
		;;
	haproxy | haproxy-splice)
		local splice=""
		[[ $t == haproxy-splice ]] && splice="    option splice-auto"
		cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 6000

defaults
    mode tcp
    timeout connect 5s
    timeout client 600s
    timeout server 600s
$splice

frontend fe
    bind 127.0.0.1:$port backlog 4096
    maxconn 6000
    default_backend be

backend be
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
EOF
		;;
	nginx)
		cat >"$d/nginx.conf" <<EOF
$NGINX_STREAM
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16000; }
stream {
    upstream be {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        proxy_pass be;
        proxy_connect_timeout 5s;
        proxy_timeout 600s;
    }
}
EOF
		;;
	esac
}

# write_dns_target TARGET PORT: the target's UDP config for the dns
# workload, under $WORK/TARGET (bal: dns.yaml, nginx: dns.conf).
write_dns_target() {
	local t=$1 port=$2 d=$WORK/$1
	mkdir -p "$d"
	case $t in
	bal-gnet | bal-std)
		cat >"$d/dns.yaml" <<EOF
mode: "advanced"
log_level: "warn"
runtime:
  engine: "${t#bal-}"
  drain_timeout_ms: 0
services:
  - name: "dns"
    protocol: "udp"
    bind_address: "127.0.0.1"
    port: $port
    method: "round_robin"
    runtime:
      udp_idle_timeout_ms: 30000
      max_udp_flows: 8000
    backends:
      - {host: "127.0.0.1", port: $D1}
      - {host: "127.0.0.1", port: $D2}
EOF
		;;
	nginx)
		cat >"$d/dns.conf" <<EOF
$NGINX_STREAM
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx-dns.pid;
error_log $d/error.log warn;
events { worker_connections 16000; }
stream {
    upstream dns {
        server 127.0.0.1:$D1;
        server 127.0.0.1:$D2;
    }
    server {
        listen 127.0.0.1:$port udp;
        proxy_pass dns;
        proxy_timeout 30s;
    }
}
EOF
		;;
	esac
}

# proxy_cmd TARGET [WORKLOAD]: the command line that runs the target's
# proxy pinned to PROXY_CPU, in CMD (with the dns workload's UDP config for
# dns). bal runs with GOMAXPROCS=$BAL_PROCS (1: one gnet event loop and one
# data loop).
proxy_cmd() {
	local t=$1 d=$WORK/$1 bal_cfg=config.yaml nginx_cfg=nginx.conf
	if [[ ${2:-} == dns ]]; then bal_cfg=dns.yaml nginx_cfg=dns.conf; fi
	case $t in
	bal-gnet | bal-std) CMD=(env BAL_HOME="$d" GOMAXPROCS="$BAL_PROCS" taskset -c "$PROXY_CPU" "$BAL" start -c "$d/$bal_cfg") ;;
	haproxy | haproxy-splice) CMD=(taskset -c "$PROXY_CPU" haproxy -db -f "$d/haproxy.cfg") ;;
	nginx) CMD=(taskset -c "$PROXY_CPU" nginx -p "$d" -c "$d/$nginx_cfg" -e "$d/error.log") ;;
	esac
}

# wait_ready ADDR PID LOG: until a GET through ADDR answers (fails when PID exits).
wait_ready() {
	"$WORK/bin/startup" -addr "$1" -wait -pid "$2" -timeout 10s 2>>"$WORK/stderr.log" && return 0
	say "no answer on $1; last lines of $3:"
	tail -n 20 "$3" >&2 || true
	return 1
}

# start_proxy TARGET: runs it; PROXY_PID, PROXY_TREE (with nginx's workers).
start_proxy() {
	local t=$1
	proxy_cmd "$t"
	spawn "$WORK/$t/run.log" "${CMD[@]}"
	PROXY_PID=$SPAWNED
	wait_ready "127.0.0.1:${PORT[$t]}" "$PROXY_PID" "$WORK/$t/run.log" || return 1
	PROXY_TREE=$(proc_tree "$PROXY_PID")
}

# ---------------------------------------------------------------- readings
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# ticks PID...: utime+stime of these processes, in clock ticks.
ticks() {
	local p sum=0 v
	for p in "$@"; do
		v=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null) || v=0
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

# busy_ticks: busy time of the whole machine (user nice system irq softirq).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }

# child_ticks: CPU of this shell's reaped children (bash `times`), in ticks.
# `times` must run in this shell, not in a $(...) subshell.
child_ticks() {
	times >"$WORK/times"
	awk -v hz="$CLK_TCK" 'function s(t) { sub(/s$/, "", t); split(t, a, "m"); return a[1] * 60 + a[2] }
		NR == 2 { printf "%d\n", (s($1) + s($2)) * hz + 0.5 }' "$WORK/times"
}

now_ns() { date +%s%N; }

# wait_quiet: up to QUIET seconds until the machine's busy time over half a
# second is below 15 % (other sessions' tests on a shared VM); counts the
# runs that started without it in NOISY.
NOISY=0
wait_quiet() {
	((QUIET > 0)) || return 0
	local until=$(($(date +%s) + QUIET)) g0 g1
	while :; do
		g0=$(busy_ticks)
		sleep 0.5
		g1=$(busy_ticks)
		# (g1-g0) / (CLK_TCK * NCPU * 0.5) < 15 %
		(((g1 - g0) * 200 < 15 * CLK_TCK * NCPU)) && return 0
		if (($(date +%s) >= until)); then
			NOISY=$((NOISY + 1))
			return 0
		fi
	done
}

# emit REP WORKLOAD TARGET METRIC VALUE: one raw row.
emit() { echo "$1,$2,$3,$4,$5" >>"$RAW"; }

# calc EXPR: floating-point arithmetic with awk.
calc() { awk "BEGIN { v = $1; printf \"%.10g\n\", v }"; }

# field KEY FILE: the value of KEY=value in FILE's line of key=value pairs.
field() { tr ' ' '\n' <"$2" | sed -n "s/^$1=//p" | head -n 1; }

# ---------------------------------------------------------------- workloads
wrk_args() {
	case $1 in
	ka64) WRK=(-t1 -c64 --timeout 5s) WRK_PATH=/small MAIN=rps ;;
	ka256) WRK=(-t1 -c256 --timeout 5s) WRK_PATH=/small MAIN=rps ;;
	close) WRK=(-t1 -c64 --timeout 5s -H "Connection: close") WRK_PATH=/small MAIN=rps ;;
	bulk) WRK=(-t1 -c8 --timeout 10s) WRK_PATH=/bulk10m MAIN=mbps ;;
	esac
}

# na REP WORKLOAD TARGET METRIC...: record a failed run.
na() {
	local rep=$1 w=$2 t=$3 m
	shift 3
	for m in "$@"; do emit "$rep" "$w" "$t" "$m" NA; done
	FAILED+=("rep $rep $w $t")
}

run_wrk() {
	local rep=$1 w=$2 t=$3 addr out=$WORK/wrk.out
	local p0 p1 b0 b1 g0 g1 c0 c1 t0 t1 proxy=0 backend wrk_t elapsed
	wrk_args "$w"
	PROXY_TREE=""
	if [[ $t == direct ]]; then
		addr=127.0.0.1:$B1
	else
		addr=127.0.0.1:${PORT[$t]}
		start_proxy "$t" || { na "$rep" "$w" "$t" "$MAIN"; return 0; }
	fi
	if ((WARMUP > 0)); then
		run_to /dev/null taskset -c "$LOAD_CPU" wrk "${WRK[@]}" -d "${WARMUP}s" "http://$addr$WRK_PATH" || true
	fi
	# shellcheck disable=SC2086 # PROXY_TREE and BACKEND_TREE are PID lists
	{
		p0=$(ticks $PROXY_TREE)
		b0=$(ticks $BACKEND_TREE)
		g0=$(busy_ticks)
		child_ticks >"$WORK/c0"
		t0=$(now_ns)
	}
	if ! run_to "$out" taskset -c "$LOAD_CPU" wrk "${WRK[@]}" -d "${DURATION}s" -s bench/wrk-report.lua "http://$addr$WRK_PATH" ||
		! grep -q '^BENCH ' "$out"; then
		say "wrk failed: $w $t"
		[[ $t == direct ]] || stop_tree "$PROXY_PID"
		na "$rep" "$w" "$t" "$MAIN"
		return 0
	fi
	# shellcheck disable=SC2086
	{
		t1=$(now_ns)
		child_ticks >"$WORK/c1"
		g1=$(busy_ticks)
		b1=$(ticks $BACKEND_TREE)
		p1=$(ticks $PROXY_TREE)
	}
	[[ $t == direct ]] || stop_tree "$PROXY_PID"
	c0=$(<"$WORK/c0")
	c1=$(<"$WORK/c1")
	grep '^BENCH ' "$out" | head -n 1 >"$out.line"
	local req bytes dur p99 errs tmo st
	req=$(field requests "$out.line")
	bytes=$(field bytes "$out.line")
	dur=$(field duration_us "$out.line")
	p99=$(field p99_us "$out.line")
	errs=$(field errors "$out.line")
	tmo=$(field timeouts "$out.line")
	st=$(field status "$out.line")
	if ((errs + tmo + st > 0)); then
		say "note: $w $t: $errs socket errors, $tmo timeouts, $st non-2xx of $req requests"
		echo "rep $rep $w $t: $errs socket errors, $tmo timeouts, $st non-2xx of $req requests" >>"$WORK/errors.txt"
	fi
	if ((req == 0)); then
		na "$rep" "$w" "$t" "$MAIN"
		return 0
	fi
	elapsed=$(calc "($t1 - $t0) / 1e9")
	proxy=$((p1 - p0))
	backend=$((b1 - b0))
	wrk_t=$((c1 - c0))
	if [[ $w == bulk ]]; then
		emit "$rep" "$w" "$t" mbps "$(calc "$bytes / ($dur / 1e6) / 1e6")"
	else
		emit "$rep" "$w" "$t" rps "$(calc "$req / ($dur / 1e6)")"
		emit "$rep" "$w" "$t" p99_ms "$(calc "$p99 / 1000")"
	fi
	if [[ $t != direct ]]; then
		if [[ $w == bulk ]]; then
			emit "$rep" "$w" "$t" cpu_s_gb "$(calc "($proxy / $CLK_TCK) / ($bytes / 1e9)")"
		else
			emit "$rep" "$w" "$t" cpu_us_req "$(calc "($proxy / $CLK_TCK) * 1e6 / $req")"
		fi
		emit "$rep" "$w" "$t" cpu_pct "$(calc "100 * ($proxy / $CLK_TCK) / $elapsed")"
	fi
	local foreign
	foreign=$(calc "100 * (($g1 - $g0) - $proxy - $backend - $wrk_t) / ($CLK_TCK * $NCPU * $elapsed)")
	emit "$rep" "$w" "$t" foreign_pct "$(calc "$foreign < 0 ? 0 : $foreign")"
}

# run_dns REP TARGET: the dns workload: bench/dnsload (16 sockets, 8
# queries outstanding on each) through the target, or straight to the first
# resolver for direct.
run_dns() {
	local rep=$1 t=$2 addr out=$WORK/dns.out
	local p0 p1 b0 b1 g0 g1 c0 c1 t0 t1 proxy=0 backend load_t elapsed
	PROXY_TREE=""
	if [[ $t == direct ]]; then
		addr=127.0.0.1:$D1
	else
		addr=127.0.0.1:${DNS_PORT[$t]}
		proxy_cmd "$t" dns
		spawn "$WORK/$t/dns.log" "${CMD[@]}"
		PROXY_PID=$SPAWNED
		if ! run_to /dev/null "$WORK/bin/dnsload" -addr "$addr" -wait -timeout 10s; then
			say "no DNS answer through $t; last lines of its log:"
			tail -n 20 "$WORK/$t/dns.log" >&2 || true
			stop_tree "$PROXY_PID"
			na "$rep" dns "$t" qps
			return 0
		fi
		PROXY_TREE=$(proc_tree "$PROXY_PID")
	fi
	local load=(taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$WORK/bin/dnsload" -addr "$addr" -c 16 -q 8 -warmup 0s)
	if ((WARMUP > 0)); then run_to /dev/null "${load[@]}" -d "${WARMUP}s" || true; fi
	# shellcheck disable=SC2086 # PROXY_TREE and DNS_TREE are PID lists
	{
		p0=$(ticks $PROXY_TREE)
		b0=$(ticks $DNS_TREE)
		g0=$(busy_ticks)
		child_ticks >"$WORK/c0"
		t0=$(now_ns)
	}
	if ! run_to "$out" "${load[@]}" -d "${DURATION}s" || ! grep -q '^BENCH ' "$out"; then
		say "dnsload failed: $t"
		[[ $t == direct ]] || stop_tree "$PROXY_PID"
		na "$rep" dns "$t" qps
		return 0
	fi
	# shellcheck disable=SC2086
	{
		t1=$(now_ns)
		child_ticks >"$WORK/c1"
		g1=$(busy_ticks)
		b1=$(ticks $DNS_TREE)
		p1=$(ticks $PROXY_TREE)
	}
	[[ $t == direct ]] || stop_tree "$PROXY_PID"
	c0=$(<"$WORK/c0")
	c1=$(<"$WORK/c1")
	local answered lost bad p99 queries
	queries=$(field queries "$out")
	answered=$(field answered "$out")
	lost=$(field lost "$out")
	bad=$(field bad "$out")
	p99=$(field p99_us "$out")
	if ((lost + bad > 0)); then
		say "note: dns $t: $lost lost, $bad bad answers of $queries queries"
		echo "rep $rep dns $t: $lost lost, $bad bad answers of $queries queries" >>"$WORK/errors.txt"
	fi
	if ((answered == 0)); then
		na "$rep" dns "$t" qps
		return 0
	fi
	elapsed=$(calc "($t1 - $t0) / 1e9")
	proxy=$((p1 - p0))
	backend=$((b1 - b0))
	load_t=$((c1 - c0))
	emit "$rep" dns "$t" qps "$(field qps "$out")"
	emit "$rep" dns "$t" p99_ms "$(calc "$p99 / 1000")"
	emit "$rep" dns "$t" lost_pct "$(calc "100 * $lost / $queries")"
	if [[ $t != direct ]]; then
		emit "$rep" dns "$t" cpu_us_req "$(calc "($proxy / $CLK_TCK) * 1e6 / $answered")"
		emit "$rep" dns "$t" cpu_pct "$(calc "100 * ($proxy / $CLK_TCK) / $elapsed")"
	fi
	local foreign
	foreign=$(calc "100 * (($g1 - $g0) - $proxy - $backend - $load_t) / ($CLK_TCK * $NCPU * $elapsed)")
	emit "$rep" dns "$t" foreign_pct "$(calc "$foreign < 0 ? 0 : $foreign")"
}

run_idle() {
	local rep=$1 t=$2 out=$WORK/idle.out rc=0
	start_proxy "$t" || { na "$rep" idle "$t" b_per_conn; return 0; }
	run_to "$out" taskset -c "$LOAD_CPU" "$WORK/bin/idleconns" -addr "127.0.0.1:${PORT[$t]}" \
		-pid "$PROXY_PID" -n "$IDLE_N" -settle 1s || rc=$?
	if grep -q 'rss_per_conn_b=' "$out"; then
		# Figures are per connection actually held, also when not all of them could be.
		emit "$rep" idle "$t" b_per_conn "$(field rss_per_conn_b "$out")"
		emit "$rep" idle "$t" anon_per_conn "$(field anon_per_conn_b "$out")"
		emit "$rep" idle "$t" fds_per_conn "$(field fds_per_conn "$out")"
		emit "$rep" idle "$t" rss_mb "$(calc "$(field rss_kb "$out") / 1024")"
		emit "$rep" idle "$t" held "$(field alive "$out")"
	else
		na "$rep" idle "$t" b_per_conn
	fi
	if ((rc != 0)); then
		local why
		why=$(tail -n 1 "$WORK/stderr.log")
		say "note: idle $t: $why"
		echo "rep $rep idle $t: $(field alive "$out") of $IDLE_N connections held (${why#idleconns: })" >>"$WORK/errors.txt"
	fi
	stop_tree "$PROXY_PID"
}

run_startup() {
	local rep=$1 t=$2 out=$WORK/startup.out
	proxy_cmd "$t"
	if run_to "$out" taskset -c "$LOAD_CPU" "$WORK/bin/startup" -addr "127.0.0.1:${PORT[$t]}" -n "$STARTS" -- "${CMD[@]}"; then
		emit "$rep" startup "$t" ms "$(field startup_ms "$out")"
	else
		say "startup failed: $t: $(tail -n 1 "$WORK/stderr.log")"
		na "$rep" startup "$t" ms
	fi
}

# ---------------------------------------------------------------- main
START_NS=$(now_ns)
mkdir -p bench/.work "$OUTDIR"
WORK=$(mktemp -d "$ROOT/bench/.work/run.XXXXXX")
RAW=$WORK/raw.csv
echo "rep,workload,target,metric,value" >"$RAW"
FAILED=()
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_tools
build

B1=$(free_port)
B2=$(free_port)
declare -A PORT DNS_PORT
DNS=0
[[ ",$WORKLOADS," == *,dns,* ]] && DNS=1
if ((DNS)); then
	D1=$(free_port)
	D2=$(free_port)
fi
for t in ${TARGETS//,/ }; do
	[[ $t == direct ]] && continue
	PORT[$t]=$(free_port)
	write_target "$t" "${PORT[$t]}"
	if ((DNS)) && [[ ",$DNS_TARGETS," == *,$t,* ]]; then
		DNS_PORT[$t]=$(free_port)
		write_dns_target "$t" "${DNS_PORT[$t]}"
	fi
done
write_backend
spawn "$WORK/backend/run.log" taskset -c "$LOAD_CPU" nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -e "$WORK/backend/logs/error.log"
BACKEND_PID=$SPAWNED
for b in "$B1" "$B2"; do
	wait_ready "127.0.0.1:$b" "$BACKEND_PID" "$WORK/backend/logs/error.log" || die "backend nginx did not start"
done
BACKEND_TREE=$(proc_tree "$BACKEND_PID")
say "backends 127.0.0.1:$B1 and :$B2 (nginx PID $BACKEND_PID); work dir $WORK"
# The dns workload's resolvers: two dnsmasq answering test.example from
# their configuration only, pinned with the load.
DNS_TREE=""
if ((DNS)); then
	for d in "$D1" "$D2"; do
		spawn "$WORK/dnsmasq-$d.log" taskset -c "$LOAD_CPU" dnsmasq --no-daemon --conf-file=/dev/null --pid-file= --user=root \
			--port="$d" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --address=/test.example/127.0.0.11
		DNS_TREE+="$SPAWNED "
		run_to /dev/null "$WORK/bin/dnsload" -addr "127.0.0.1:$d" -wait -timeout 10s || die "dnsmasq on :$d did not answer"
	done
	say "resolvers 127.0.0.1:$D1 and :$D2 (dnsmasq PIDs $DNS_TREE)"
fi

# skip WORKLOAD TARGET: the target does not run the workload.
skip() {
	[[ $2 == direct && ($1 == idle || $1 == startup) ]] && return 0
	[[ $1 == dns && ",$DNS_TARGETS," != *,$2,* ]] && return 0
	return 1
}

# Count the runs for the progress line.
total=0
for w in ${WORKLOADS//,/ }; do
	for t in ${TARGETS//,/ }; do
		skip "$w" "$t" && continue
		total=$((total + 1))
	done
done
total=$((total * REPS))

i=0
for ((rep = 1; rep <= REPS; rep++)); do
	for w in ${WORKLOADS//,/ }; do
		for t in ${TARGETS//,/ }; do
			skip "$w" "$t" && continue
			i=$((i + 1))
			say "run $i/$total: repetition $rep of $REPS, $w, $t"
			wait_quiet
			case $w in
			idle) run_idle "$rep" "$t" ;;
			startup) run_startup "$rep" "$t" ;;
			dns) run_dns "$rep" "$t" ;;
			*) run_wrk "$rep" "$w" "$t" ;;
			esac
		done
	done
done
stop_tree "$BACKEND_PID"
for p in $DNS_TREE; do stop_tree "$p"; done

# ---------------------------------------------------------------- results
DATE=$(date +%Y-%m-%d)
BASE=$OUTDIR/$DATE
[[ -e $BASE.md ]] && BASE=$OUTDIR/$(date +%Y-%m-%d-%H%M)
NAME=$(basename "$BASE")
"$WORK/bin/report" -in "$RAW" -csv "$BASE.csv" -md "$WORK/tables.md" -gp "$WORK/chart.gp" \
	-svg "$BASE.svg" -title "bal bench $NAME: ratios, median of $REPS"
gnuplot "$WORK/chart.gp" 2>>"$WORK/stderr.log" || say "gnuplot failed; see $WORK/stderr.log"

MINUTES=$(awk -v ns="$(($(now_ns) - START_NS))" 'BEGIN { printf "%.1f", ns / 6e10 }')
{
	echo "# bal bench, $NAME"
	echo
	echo "- Machine: $(nproc) vCPU ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)."
	echo "- Software: $("$BAL" --version 2>&1 | head -n 1), $(haproxy -v 2>&1 | head -n 1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3)."
	echo "- Run: \`bench/run.sh -t $TARGETS -w $WORKLOADS -d $DURATION -W $WARMUP -r $REPS -n $IDLE_N -s $STARTS -q $QUIET\`, $MINUTES min; $NOISY of $total runs started without a quiet machine (other load ≥ 15 % after waiting $QUIET s); load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo "- Method: loopback; wrk -t1 and the backend nginx (1 worker, two ports: the two backends) pinned to CPU $LOAD_CPU, the proxy pinned to CPU $PROXY_CPU (bal with GOMAXPROCS=$BAL_PROCS, i.e. $BAL_PROCS gnet event loop(s); HAProxy nbthread 1; nginx 1 worker). Each proxy balances round robin over both backends; direct is wrk straight to one backend. Targets interleaved within each workload and repetition, each proxy started fresh per run; ${WARMUP} s warm-up then ${DURATION} s measured. Proxy CPU is utime+stime from /proc/<pid>/stat of the proxy and its children. Ratios are taken within one repetition, then the median. Idle: $IDLE_N connections, one request each, held; (RSS, fds after) − (after a 200-connection warm-up). Start-up: spawn to first proxied 200 answer, median of $STARTS spawns."
	if ((DNS)); then
		echo "- DNS (UDP): bench/dnsload (16 sockets, 8 queries outstanding each, GOMAXPROCS=1) and two dnsmasq resolvers on CPU $LOAD_CPU; bal with a protocol: udp service, nginx stream with listen udp and one worker; direct asks the first resolver. HAProxy has no UDP: the dns ratios are against nginx. bal-gnet runs UDP services on the portable engine's UDP relay until the Linux engine has UDP loops."
	fi
	echo
	cat "$WORK/tables.md"
	if [[ -s $WORK/errors.txt ]]; then
		echo
		echo "**Errors** (the runs are kept in the tables):"
		echo
		sed 's/^/- /' "$WORK/errors.txt"
	fi
	if ((${#FAILED[@]} > 0)); then
		echo
		echo "**Failed runs** (NA in the CSV): ${FAILED[*]}"
	fi
	echo
	echo "![ratios]($NAME.svg)"
} >"$BASE.md"

say "done in $MINUTES min: $BASE.md, $BASE.csv, $BASE.svg"
cat "$BASE.md"
