import { spawn } from 'child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import pino from 'pino';
import { LogLines } from '../../lib/log-lines';

describe('log lines', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'log-lines-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes every line of a pino logger, in order, by the time it is closed', async () => {
    const file = join(dir, 'log');
    const fd = openSync(file, 'w');
    const lines = new LogLines(fd, 1024);
    const log = pino({ level: 'info' }, lines);
    for (let i = 0; i < 5000; i++) log.info({ i, path: '/pkg/-/pkg-1.0.' + i + '.tgz' }, 'request');
    log.info('ünïcödé ✓');
    await lines.close();
    closeSync(fd);
    const written = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(written).toHaveLength(5001);
    expect(written.slice(0, 5000).map((entry) => entry.i)).toEqual([...Array(5000).keys()]);
    expect(written[5000].msg).toBe('ünïcödé ✓');
  });

  it('writes lines within a second without being asked', async () => {
    const file = join(dir, 'log');
    const fd = openSync(file, 'w');
    const lines = new LogLines(fd);
    lines.write('{"msg":"one"}\n');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(readFileSync(file, 'utf8')).toBe('{"msg":"one"}\n');
    await lines.close();
    closeSync(fd);
  });

  it('closes at once when the reader has gone away, however much was left to write', async () => {
    const reader = spawn(process.execPath, ['-e', 'process.exit(0)'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const fd = (reader.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    await new Promise((resolve) => reader.once('exit', resolve));
    const lines = new LogLines(fd, 4096);
    for (let i = 0; i < 1000; i++) lines.write(JSON.stringify({ msg: 'x'.repeat(100) }) + '\n');
    // Past the pipe's closing (EPIPE): nothing more is written, and close does not wait out its 10 s.
    await new Promise((resolve) => setTimeout(resolve, 300));
    lines.write('{"msg":"after"}\n');
    const started = Date.now();
    await lines.close(10_000);
    expect(Date.now() - started).toBeLessThan(1000);
    reader.stdin!.destroy();
  });

  it('drops lines past its limit while the reader does not read, and says how many once it does', async () => {
    // A real pipe to a process that reads nothing for a second and then everything.
    const reader = spawn(process.execPath, ['-e', 'setTimeout(() => process.stdin.pipe(process.stdout), 1000)'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let received = '';
    reader.stdout!.on('data', (d) => (received += d));
    const fd = (reader.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    const lines = new LogLines(fd, 4096, 256 * 1024);
    const line = JSON.stringify({ msg: 'x'.repeat(1000) }) + '\n';
    // 2 MB: far more than a pipe holds (64 KB) and than the limit.
    for (let i = 0; i < 2000; i++) lines.write(line);
    await lines.close(10_000);
    reader.stdin!.end();
    await new Promise((resolve) => reader.once('exit', resolve));
    const got = received.trim().split('\n').map((l) => JSON.parse(l));
    const notice = got.find((entry) => entry.dropped);
    const kept = got.filter((entry) => !entry.dropped).length;
    expect(kept).toBeGreaterThan(200);
    expect(kept).toBeLessThan(2000);
    expect(notice).toMatchObject({ level: 40, dropped: 2000 - kept });
  });
});
