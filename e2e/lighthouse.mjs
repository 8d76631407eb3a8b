// Lighthouse audits of Quire's public pages: home, a story (with a cover), a chapter, a
// profile, a tag, the search and the login page, in Debian's Chromium (headless,
// --no-sandbox: we run as root). Fails (exit 1) when a page scores below 100 for
// accessibility, best practices or SEO, or below 95 for performance, and writes the
// scores as a table into the "Lighthouse" section of bench/RESULTS.md (replaced on each
// run).
//
//   E2E_BASE_URL=http://127.0.0.1:8000 node lighthouse.mjs
//
// Usually started by ./run after the journeys, on the same server: the pages audited are
// found through the sitemap (the journeys' story, with its cover and two chapters).
// Environment: E2E_BASE_URL, CHROME_PATH (or CHROMIUM; default /usr/bin/chromium),
// LIGHTHOUSE_RESULTS (default ../bench/RESULTS.md; "-" writes none), LIGHTHOUSE_OPTIONAL
// (comma-separated page names whose 404 is reported, not failed: a page another branch
// is still building).
//
// Settings: Lighthouse's defaults (mobile, simulated throttling), so scores compare with
// what anyone running `lighthouse URL` gets.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as chromeLauncher from 'chrome-launcher';
import lighthouse from 'lighthouse';

const HERE = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.E2E_BASE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const CHROME = process.env.CHROME_PATH || process.env.CHROMIUM || '/usr/bin/chromium';
const RESULTS = process.env.LIGHTHOUSE_RESULTS || join(HERE, '..', 'bench', 'RESULTS.md');
const OPTIONAL = new Set((process.env.LIGHTHOUSE_OPTIONAL || '').split(',').map((s) => s.trim()).filter(Boolean));
const CATEGORIES = ['performance', 'accessibility', 'best-practices', 'seo'];
const THRESHOLD = { performance: 95, accessibility: 100, 'best-practices': 100, seo: 100 };
const T0 = Date.now();
const log = (msg) => console.log(msg);

async function text(path) {
  const r = await fetch(BASE + path);
  if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
  return r.text();
}

const locs = (xml) => [...xml.matchAll(/<loc>([^<]*)<\/loc>/g)].map((m) => new URL(m[1]).pathname);

/** The pages to audit, found through the sitemap: a story with a cover when one exists. */
async function pages() {
  const parts = locs(await text('/sitemap.xml'));
  const urls = [];
  for (const p of parts) urls.push(...locs(await text(p)));
  const stories = urls.filter((u) => /^\/s\/\d+$/.test(u));
  if (!stories.length) throw new Error('no public story in the sitemap: run the journeys (e2e/run.mjs) first');
  let story = null;
  for (const s of stories.reverse()) { // newest ids first: the journeys' latest story
    const html = await text(s);
    if (!urls.includes(`${s}/c/1`)) continue;
    story = story || s;
    if (/<meta property="og:image"/.test(html)) { story = s; break; }
  }
  if (!story) throw new Error('no public story with a chapter in the sitemap');
  const html = await text(story);
  const title = (html.match(/<h1>([^<]*)<\/h1>/) || [])[1] || 'story';
  // a word search engines index: not a stop word like "the"
  const STOP = new Set(['the', 'and', 'for', 'with', 'that', 'this', 'from', 'into', 'over']);
  const word = title.split(/\W+/).find((w) => w.length > 2 && !STOP.has(w.toLowerCase())) || 'story';
  const profile = (html.match(/href="(\/u\/[a-z0-9_]+)"/) || [])[1] || urls.find((u) => u.startsWith('/u/'));
  const tag = (html.match(/href="(\/t\/[a-z0-9-]+)"/) || [])[1] || urls.find((u) => u.startsWith('/t/'));
  return [
    ['home', '/'],
    ['story', story],
    ['chapter', `${story}/c/1`],
    ['profile', profile],
    ['tag', tag],
    ['search', `/search?q=${encodeURIComponent(word.toLowerCase())}`],
    ['login', '/login'],
  ].filter(([, p]) => p);
}

/** The audits that cost points in a category (score < 1, weight > 0), for the log. */
function losses(lhr, category) {
  return lhr.categories[category].auditRefs
    .filter((ref) => ref.weight > 0 && lhr.audits[ref.id].score !== null && lhr.audits[ref.id].score < 1)
    .map((ref) => {
      const a = lhr.audits[ref.id];
      const items = (a.details?.items || []).slice(0, 3).map((i) => i.description || i.source?.url || i.url || i.node?.snippet || JSON.stringify(i).slice(0, 160));
      return `${ref.id} (${a.score}): ${a.title}${items.length ? ` — ${items.join(' | ')}` : ''}`;
    });
}

function writeResults(rows, failures) {
  if (RESULTS === '-') return;
  const now = new Date().toISOString().replace('T', ' ').slice(0, 16);
  const head = '| page | path | performance | accessibility | best practices | SEO | result |\n|---|---|---|---|---|---|---|';
  const body = rows.map((r) => `| ${r.name} | \`${r.path}\` | ${r.scores ? CATEGORIES.map((c) => r.scores[c]).join(' | ') : `${r.note} | | | `} | ${r.result} |`).join('\n');
  const section = `# Lighthouse

Replaced by \`e2e/lighthouse.mjs\` on each run (\`e2e/run\` runs it after the journeys, on their server and content). Lighthouse ${lighthouseVersion()} with its default settings (mobile, simulated throttling) in Debian's Chromium, headless. Thresholds: performance ≥ 95, accessibility, best practices and SEO = 100.

Last run: ${now} UTC, ${rows.length} pages in ${((Date.now() - T0) / 1000).toFixed(0)} s${failures.length ? `, **${failures.length} below threshold**` : ', all at or above the thresholds'}.

${head}
${body}
`;
  let md = '';
  try { md = readFileSync(RESULTS, 'utf8'); } catch { /* a new file */ }
  const start = md.search(/^# Lighthouse\s*$/m);
  if (start >= 0) {
    const rest = md.slice(start + 1);
    // The section ends at the next heading of its level or above: the benchmarks append
    // their dated `## ` sections after it, and they must survive this rewrite.
    const next = rest.search(/^#{1,2} /m);
    md = md.slice(0, start) + section + (next >= 0 ? `\n${rest.slice(next)}` : '');
  } else {
    md = `${md.replace(/\s*$/, '')}${md ? '\n\n' : ''}${section}`;
  }
  writeFileSync(RESULTS, md);
  log(`  scores written to ${RESULTS}`);
}

function lighthouseVersion() {
  try { return JSON.parse(readFileSync(join(HERE, 'node_modules', 'lighthouse', 'package.json'), 'utf8')).version; } catch { return '?'; }
}

async function main() {
  const list = await pages();
  log(`  auditing ${list.length} pages of ${BASE} with Lighthouse ${lighthouseVersion()} (${CHROME})`);
  const chrome = await chromeLauncher.launch({
    chromePath: CHROME,
    chromeFlags: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const rows = [];
  const failures = [];
  try {
    for (const [name, path] of list) {
      const t = Date.now();
      const status = (await fetch(BASE + path)).status;
      if (status === 404 && OPTIONAL.has(name)) {
        log(`    SKIP ${name} ${path}: 404 (listed in LIGHTHOUSE_OPTIONAL: not built on this branch yet)`);
        rows.push({ name, path, note: 'not audited: 404 (not built yet)', result: 'skipped' });
        continue;
      }
      const audit = async () => {
        const { lhr } = await lighthouse(BASE + path, { port: chrome.port, output: 'json', logLevel: 'error', onlyCategories: CATEGORIES });
        return { lhr, scores: Object.fromEntries(CATEGORIES.map((c) => [c, Math.round((lhr.categories[c].score ?? 0) * 100)])) };
      };
      let { lhr, scores } = await audit();
      // Performance is the one timing-dependent score: on a shared 2-core machine one run's
      // total blocking time swings by several points. As Lighthouse's variability guide
      // advises, a page below the bar is audited twice more and judged by the median run.
      let runs = 1;
      if (scores.performance < THRESHOLD.performance) {
        const all = [{ lhr, scores }, await audit(), await audit()];
        all.sort((a, b) => a.scores.performance - b.scores.performance);
        ({ lhr, scores } = all[1]);
        runs = 3;
        log(`           performance ${all.map((r) => r.scores.performance).join(', ')} in 3 runs: the median counts`);
      }
      const below = CATEGORIES.filter((c) => scores[c] < THRESHOLD[c]);
      const ok = below.length === 0 && status === 200;
      log(`    ${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(8)} ${CATEGORIES.map((c) => `${c} ${scores[c]}`).join(', ')} — ${path} (${status}, ${((Date.now() - t) / 1000).toFixed(1)}s)`);
      for (const c of CATEGORIES) for (const l of losses(lhr, c)) log(`           ${c}: ${l}`);
      if (status !== 200) failures.push(`${name}: ${path} answered ${status}`);
      for (const c of below) failures.push(`${name}: ${c} ${scores[c]} < ${THRESHOLD[c]}`);
      rows.push({ name, path, scores, result: (runs > 1 ? 'median of 3 runs: ' : '') + (ok ? 'pass' : `**fail** (${[status !== 200 ? `HTTP ${status}` : null, ...below].filter(Boolean).join(', ')})`) });
    }
  } finally {
    await chrome.kill();
  }
  writeResults(rows, failures);
  const secs = ((Date.now() - T0) / 1000).toFixed(1);
  if (failures.length) {
    log(`lighthouse: ${failures.length} below threshold in ${secs}s:\n  ${failures.join('\n  ')}`);
    process.exit(1);
  }
  log(`lighthouse: ${rows.length} pages at or above the thresholds in ${secs}s`);
}

main().catch((e) => {
  console.error(`lighthouse: ${e.stack || e}`);
  process.exit(1);
});
