/**
 * A self-contained HTML report (inline SVG, no scripts, no network): per
 * scenario, the send and arrival spread of every burst, the latency
 * distribution, and the outcome of every trial.
 */
import { percentile } from '../burst/percentile.js';
import type { ScenarioReport } from './run-scenario.js';

function esc(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

const W = 640;
const H = 160;
const PAD = 32;

/** Bars of one value per trial. */
function barChart(values: readonly (number | null)[], label: string, color: string): string {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return `<p class="none">${esc(label)}: not measured</p>`;
  const max = Math.max(...finite, 1e-9);
  const width = (W - 2 * PAD) / values.length;
  const bars = values
    .map((v, i) => {
      if (v === null || !Number.isFinite(v)) return '';
      const h = ((H - 2 * PAD) * v) / max;
      return `<rect x="${(PAD + i * width + 1).toFixed(1)}" y="${(H - PAD - h).toFixed(1)}" width="${Math.max(1, width - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>trial ${i + 1}: ${v.toFixed(3)} ms</title></rect>`;
    })
    .join('');
  return `<figure><figcaption>${esc(label)} per burst (max ${max.toFixed(3)} ms)</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}"><line x1="${PAD}" y1="${H - PAD}" x2="${W - PAD}" y2="${H - PAD}" stroke="#999"/>${bars}<text x="${PAD}" y="${H - 8}" font-size="11">trial 1</text><text x="${W - PAD}" y="${H - 8}" font-size="11" text-anchor="end">trial ${values.length}</text></svg></figure>`;
}

/** Histogram of latencies. */
function histogram(values: readonly number[]): string {
  if (values.length === 0) return '<p class="none">no latencies</p>';
  const hi = percentile(values, 99) || 1;
  const bins = 30;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values)
    counts[Math.min(bins - 1, Math.floor((v / hi) * bins))] =
      (counts[Math.min(bins - 1, Math.floor((v / hi) * bins))] ?? 0) + 1;
  const max = Math.max(...counts);
  const width = (W - 2 * PAD) / bins;
  const bars = counts
    .map((c, i) => {
      const h = ((H - 2 * PAD) * c) / max;
      return `<rect x="${(PAD + i * width + 1).toFixed(1)}" y="${(H - PAD - h).toFixed(1)}" width="${(width - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="#4a7ab5"><title>${((i * hi) / bins).toFixed(1)}–${(((i + 1) * hi) / bins).toFixed(1)} ms: ${c}</title></rect>`;
    })
    .join('');
  return `<figure><figcaption>latency distribution (0 to p99 = ${hi.toFixed(1)} ms; the last bin holds the tail)</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="latency histogram"><line x1="${PAD}" y1="${H - PAD}" x2="${W - PAD}" y2="${H - PAD}" stroke="#999"/>${bars}</svg></figure>`;
}

const STATUS_COLORS: Record<string, string> = {
  '2': '#3a9a5b',
  '3': '#8a8a8a',
  '4': '#d9a23a',
  '5': '#c0392b',
  '0': '#555',
};

/** Stacked status counts per trial, with violated trials marked. */
function outcomes(report: ScenarioReport): string {
  const trials = report.trialReports;
  if (trials.length === 0) return '';
  const width = (W - 2 * PAD) / trials.length;
  const bars = trials
    .map((t, i) => {
      const total = Object.values(t.statuses).reduce((a, b) => a + b, 0) || 1;
      let y = H - PAD;
      const parts = Object.entries(t.statuses)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([status, n]) => {
          const h = ((H - 2 * PAD) * n) / total;
          y -= h;
          return `<rect x="${(PAD + i * width + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, width - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${STATUS_COLORS[status.charAt(0)] ?? '#555'}"><title>trial ${t.trial + 1}: ${status} ×${n}</title></rect>`;
        })
        .join('');
      const mark = t.violated
        ? `<text x="${(PAD + (i + 0.5) * width).toFixed(1)}" y="${PAD - 6}" font-size="12" text-anchor="middle" fill="#c0392b">✖</text>`
        : '';
      return parts + mark;
    })
    .join('');
  return `<figure><figcaption>responses per trial by status class (✖ = invariant violated)</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="outcomes per trial">${bars}</svg></figure>`;
}

/**
 * Render reports as one HTML page that opens in a browser without a server.
 *
 * @example
 * ```ts
 * await writeFile('race-report.html', toHtml(reports));
 * ```
 */
export function toHtml(reports: readonly ScenarioReport[], generatedAt = new Date()): string {
  const sections = reports.map((r) => {
    const violated = Object.entries(r.invariants).filter(([, v]) => v.violations > 0);
    const verdict =
      violated.length === 0
        ? `<p class="ok">No invariant violated in ${r.trials} trial(s).</p>`
        : `<ul class="bad">${violated.map(([name, v]) => `<li><b>${esc(name)}</b> violated in ${v.violations}/${r.trials} trials — ${esc(v.example ?? '')}</li>`).join('')}</ul>`;
    return `<section><h2>${esc(r.name)}</h2><p>${esc(r.target)} · ${r.trials} trials · ${r.erroredTrials} errored · p50 ${r.latencyMs.p50.toFixed(1)} ms · p99 ${r.latencyMs.p99.toFixed(1)} ms</p>${verdict}
${barChart(
  r.trialReports.map((t) => t.arrivalSpreadMs),
  'arrival spread at the server (ms)',
  '#7b4ab5',
)}
${barChart(
  r.trialReports.map((t) => t.sendSpreadMs),
  'client release spread (ms)',
  '#4ab59a',
)}
${histogram(r.trialReports.flatMap((t) => t.latenciesMs))}
${outcomes(r)}</section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raceguard run report</title>
<style>body{font:14px/1.4 system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}h2{margin-top:2em;border-bottom:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:12px;color:#555}svg{width:100%;height:auto;background:#fafafa}.ok{color:#3a9a5b}.bad{color:#c0392b}.none{color:#888;font-size:12px}</style>
</head><body><h1>raceguard run</h1><p>${esc(generatedAt.toISOString())}</p>
${sections.join('\n')}
</body></html>
`;
}
