#!/usr/bin/env node
// Starts and stops the sample backends in the background, tracking them by
// PID files in sample/.pids/ (never by process name).
//
//   node run.js start [PORT...]   start backend.js on each port (default 9000 9100),
//                                 wait until each accepts connections
//   node run.js stop              SIGTERM each recorded backend, wait for it to exit
//
// A PID file whose process is gone, or is not this folder's backend.js, is
// stale: it is removed and that process is left alone. SAMPLE_PID_DIR moves
// the PID and log files (tests use it).
'use strict';

const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

const here = __dirname;
const pidDir = process.env.SAMPLE_PID_DIR || path.join(here, '.pids');
const script = path.join(here, 'backend.js');

function pidFile(port) { return path.join(pidDir, `backend-${port}.pid`); }
function logFile(port) { return path.join(pidDir, `backend-${port}.log`); }

function alive(pid) {
  try { process.kill(pid, 0); } catch (e) { return e.code === 'EPERM'; }
  // An exited process nobody reaped yet (a zombie) is gone for our purpose.
  try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch (_) { return true; }
}

// The command line of pid, or '' when it cannot be read.
function commandLine(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch (_) {
    try { return execFileSync('ps', ['-p', String(pid), '-o', 'command='], { encoding: 'utf8' }); } catch (_) { return ''; }
  }
}

// The PID recorded for port when it is still our backend, else 0 (and the
// stale file is removed).
function recorded(port) {
  let pid;
  try { pid = Number(fs.readFileSync(pidFile(port), 'utf8').trim()); } catch (_) { return 0; }
  if (Number.isInteger(pid) && pid > 1 && alive(pid) && commandLine(pid).includes(script)) return pid;
  fs.rmSync(pidFile(port), { force: true });
  return 0;
}

function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(ports) {
  fs.mkdirSync(pidDir, { recursive: true });
  let failed = false;
  for (const port of ports) {
    const old = recorded(port);
    if (old) { console.log(`backend-${port} already running (pid ${old})`); continue; }
    const log = fs.openSync(logFile(port), 'a');
    const child = spawn(process.execPath, [script, String(port)], { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    fs.writeFileSync(pidFile(port), `${child.pid}\n`);
    let exited = false;
    child.on('exit', () => { exited = true; });
    child.unref();
    let up = false;
    for (let i = 0; i < 50 && !exited && !up; i++) { await sleep(100); up = await accepts(port); }
    if (up && !exited) {
      console.log(`backend-${port} started (pid ${child.pid}, log ${path.relative(process.cwd(), logFile(port))})`);
    } else {
      failed = true;
      console.error(`backend-${port} did not start; see ${logFile(port)}`);
      if (!exited) { try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ } }
      fs.rmSync(pidFile(port), { force: true });
    }
  }
  process.exitCode = failed ? 1 : 0;
}

async function stop() {
  let files = [];
  try { files = fs.readdirSync(pidDir).filter((f) => /^backend-\d+\.pid$/.test(f)); } catch (_) { /* none */ }
  if (files.length === 0) { console.log('no sample backend recorded'); return; }
  for (const f of files) {
    const port = Number(f.match(/\d+/)[0]);
    const pid = recorded(port);
    if (!pid) { console.log(`backend-${port}: stale pid file removed`); continue; }
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
    if (alive(pid)) {
      console.error(`backend-${port} (pid ${pid}) still running 5s after SIGTERM; sending SIGKILL`);
      try { process.kill(pid, 'SIGKILL'); } catch (_) { /* gone */ }
    }
    fs.rmSync(pidFile(port), { force: true });
    console.log(`backend-${port} stopped (pid ${pid})`);
  }
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'start') {
  const ports = (rest.length ? rest : ['9000', '9100']).map(Number);
  if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    console.error('run.js: ports must be numbers from 1 to 65535');
    process.exit(2);
  }
  start(ports);
} else if (cmd === 'stop') {
  stop();
} else {
  console.error('usage: node run.js start [PORT...] | node run.js stop');
  process.exit(2);
}
