/**
 * A self-contained HTML report (inline SVG and CSS, no scripts, no network):
 * a summary of every scenario's verdict first, then per scenario its errors,
 * each violated invariant with the responses that prove it, and charts with
 * axes, values and legends: who won in every trial (coloured by the trial's
 * verdict), the arrival and release spread of every burst, and the latency
 * distribution.
 */
import { percentile } from './percentile.js';
import type { EvidenceResponse, ScenarioReport } from './run-scenario.js';

/** Escapes text for HTML content and attribute values. */
export function esc(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** Verdict colours: red is a race, green held, grey proved nothing. Status classes never get a verdict colour. */
const COLOR = { raced: '#c0392b', clean: '#2e8b57', errored: '#8a8a8a', other: '#c9c9c9' };
type Verdict = keyof Omit<typeof COLOR, 'other'>;

const verdictOf = (r: ScenarioReport): Verdict =>
  r.violatedTrials > 0
    ? 'raced'
    : r.error !== undefined || r.erroredTrials > 0
      ? 'errored'
      : 'clean';

const CHART_WIDTH = 640;
const CHART_HEIGHT = 200;
const LEFT = 48;
const RIGHT = 12;
const TOP = 16;
const BOTTOM = 36;
const PLOT_W = CHART_WIDTH - LEFT - RIGHT;
const PLOT_H = CHART_HEIGHT - TOP - BOTTOM;

const formatNumber = (n: number): string =>
  Number.isInteger(n) ? String(n) : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);

/** Y axis with three ticks and a label, X axis with a label. */
function axes(maxY: number, yLabel: string, xLabel: string): string {
  const ticks = [0, maxY / 2, maxY]
    .map((v) => {
      const y = TOP + PLOT_H - (PLOT_H * v) / (maxY || 1);
      return `<line x1="${LEFT - 4}" y1="${y.toFixed(1)}" x2="${LEFT + PLOT_W}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/><text x="${LEFT - 6}" y="${(y + 4).toFixed(1)}" font-size="11" text-anchor="end">${formatNumber(v)}</text>`;
    })
    .join('');
  return `${ticks}<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${TOP + PLOT_H}" stroke="#666"/><line x1="${LEFT}" y1="${TOP + PLOT_H}" x2="${LEFT + PLOT_W}" y2="${TOP + PLOT_H}" stroke="#666"/><text x="12" y="${TOP + PLOT_H / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${TOP + PLOT_H / 2})">${esc(yLabel)}</text><text x="${LEFT + PLOT_W / 2}" y="${CHART_HEIGHT - 4}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>`;
}

/** Labels under bars: every bar when there are few, a handful otherwise. */
function xLabels(count: number, label: (i: number) => string): string {
  const step = Math.max(1, Math.ceil(count / 12));
  const width = PLOT_W / count;
  let out = '';
  for (let i = 0; i < count; i += step)
    out += `<text x="${(LEFT + (i + 0.5) * width).toFixed(1)}" y="${TOP + PLOT_H + 14}" font-size="10" text-anchor="middle">${esc(label(i))}</text>`;
  return out;
}

function legend(items: readonly (readonly [string, string])[]): string {
  return `<div class="legend">${items
    .map(([color, text]) => `<span><i style="background:${color}"></i>${esc(text)}</span>`)
    .join('')}</div>`;
}

function figure(caption: string, svg: string, key: string): string {
  return `<figure><figcaption>${esc(caption)}</figcaption><svg viewBox="0 0 ${CHART_WIDTH} ${CHART_HEIGHT}" role="img" aria-label="${esc(caption)}">${svg}</svg>${key}</figure>`;
}

/** One value per trial (a spread in ms), with the value written over each bar when there is room. */
function perTrial(values: readonly (number | null)[], caption: string, color: string): string {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return `<p class="none">${esc(caption)}: not measured</p>`;
  const max = Math.max(...finite) || 1;
  const width = PLOT_W / values.length;
  const bars = values
    .map((v, i) => {
      if (v === null || !Number.isFinite(v)) return '';
      const h = (PLOT_H * v) / max;
      const x = LEFT + i * width;
      const value =
        values.length <= 20
          ? `<text x="${(x + width / 2).toFixed(1)}" y="${(TOP + PLOT_H - h - 3).toFixed(1)}" font-size="10" text-anchor="middle">${formatNumber(v)}</text>`
          : '';
      return `<rect x="${(x + 1).toFixed(1)}" y="${(TOP + PLOT_H - h).toFixed(1)}" width="${Math.max(1, width - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>trial ${i + 1}: ${v.toFixed(3)} ms</title></rect>${value}`;
    })
    .join('');
  return figure(
    caption,
    axes(max, 'ms', 'trial') + bars + xLabels(values.length, (i) => String(i + 1)),
    legend([[color, `${caption}, per burst (median ${formatNumber(percentile(finite, 50))} ms)`]]),
  );
}

/** Histogram of latencies from 0 to p99; the last bin holds the tail. */
function latencies(values: readonly number[]): string {
  if (values.length === 0) return '<p class="none">latency: no responses</p>';
  const hi = percentile(values, 99) || 1;
  const bins = 30;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) {
    const bin = Math.min(bins - 1, Math.floor((v / hi) * bins));
    counts[bin] = (counts[bin] ?? 0) + 1;
  }
  const max = Math.max(...counts);
  const width = PLOT_W / bins;
  const bars = counts
    .map((c, i) => {
      const h = (PLOT_H * c) / max;
      return `<rect x="${(LEFT + i * width + 1).toFixed(1)}" y="${(TOP + PLOT_H - h).toFixed(1)}" width="${(width - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="#4a6fa5"><title>${((i * hi) / bins).toFixed(1)}–${(((i + 1) * hi) / bins).toFixed(1)} ms: ${c}</title></rect>`;
    })
    .join('');
  const ticks = [0, 0.5, 1]
    .map(
      (f) =>
        `<text x="${(LEFT + f * PLOT_W).toFixed(1)}" y="${TOP + PLOT_H + 14}" font-size="10" text-anchor="${f === 0 ? 'start' : f === 1 ? 'end' : 'middle'}">${formatNumber(f * hi)}</text>`,
    )
    .join('');
  return figure(
    'latency of every request',
    axes(max, 'requests', 'latency, ms (0 to p99; the last bar holds the slower ones)') +
      bars +
      ticks,
    legend([
      [
        '#4a6fa5',
        `requests (${values.length}; p50 ${formatNumber(percentile(values, 50))} ms, p99 ${formatNumber(hi)} ms)`,
      ],
    ]),
  );
}

/** Per trial: how many requests got a 2xx, coloured by that trial's verdict, beside the rest. */
function winners(report: ScenarioReport): string {
  const trials = report.trialReports;
  if (trials.length === 0) return '';
  const counts = trials.map((t) => {
    let ok = 0;
    let other = 0;
    for (const [status, n] of Object.entries(t.statuses)) {
      if (status.startsWith('2')) ok += n;
      else other += n;
    }
    return { ok, other };
  });
  const max = Math.max(1, ...counts.map((c) => Math.max(c.ok, c.other)));
  const width = PLOT_W / trials.length;
  const bars = trials
    .map((t, i) => {
      const { ok, other } = counts[i] ?? { ok: 0, other: 0 };
      const verdict: Verdict = t.violated ? 'raced' : t.error !== undefined ? 'errored' : 'clean';
      const x = LEFT + i * width;
      const half = Math.max(1, width / 2 - 1);
      const bar = (n: number, dx: number, fill: string, what: string): string => {
        const h = (PLOT_H * n) / max;
        const label =
          trials.length <= 20
            ? `<text x="${(x + dx + half / 2).toFixed(1)}" y="${(TOP + PLOT_H - h - 3).toFixed(1)}" font-size="10" text-anchor="middle">${n}</text>`
            : '';
        return `<rect x="${(x + dx).toFixed(1)}" y="${(TOP + PLOT_H - h).toFixed(1)}" width="${half.toFixed(1)}" height="${h.toFixed(1)}" fill="${fill}"><title>trial ${t.trial + 1} (${verdict}): ${n} ${what}</title></rect>${label}`;
      };
      return bar(ok, 1, COLOR[verdict], '2xx') + bar(other, 1 + half, COLOR.other, 'other');
    })
    .join('');
  const statuses = Object.entries(report.statuses)
    .map(([status, n]) => `${status === '0' ? 'no response' : status} ×${n}`)
    .join(', ');
  return figure(
    `who won, per trial (statuses over all trials: ${statuses || 'none'})`,
    axes(max, 'requests', 'trial') + bars + xLabels(trials.length, (i) => String(i + 1)),
    legend([
      [COLOR.raced, '2xx in a trial whose invariants broke (a race)'],
      [COLOR.clean, '2xx in a trial whose invariants held'],
      [COLOR.errored, '2xx in a trial that proved nothing'],
      [COLOR.other, 'other statuses and failed requests'],
    ]),
  );
}

/** A body as people read it: JSON indented, anything else as it came. */
function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function evidence(responses: readonly EvidenceResponse[], example: string): string {
  if (responses.length === 0) return '';
  const trial = /^trial (\d+)/.exec(example)?.[1];
  const rows = responses
    .map(
      (r) =>
        `<tr><td>request ${r.index + 1}<div class="label">${esc(r.method)} ${esc(r.path)}</div></td><td class="${r.status >= 200 && r.status < 300 ? 'won' : ''}">${r.status === 0 ? 'no response' : r.status}</td><td>${r.requestBody === undefined ? '' : `<pre>${esc(pretty(r.requestBody))}</pre>`}</td><td><pre>${esc(pretty(r.body))}</pre></td></tr>`,
    )
    .join('');
  return `<details open><summary>evidence: responses of trial ${trial ?? '?'} (the first successes, then the first failures)</summary><table class="evidence"><thead><tr><th>request</th><th>status</th><th>sent</th><th>answered</th></tr></thead><tbody>${rows}</tbody></table></details>`;
}

function section(r: ScenarioReport, position: number): string {
  const verdict = verdictOf(r);
  const badge = { raced: 'RACE', clean: 'CLEAN', errored: 'NO VERDICT' }[verdict];
  const errors: string[] = [];
  if (r.error !== undefined) errors.push(r.error);
  const failed = r.trialReports.filter((t) => t.error !== undefined);
  const first = failed[0];
  if (first !== undefined)
    errors.push(
      `${failed.length}/${r.trials} trial(s) proved nothing; trial ${first.trial + 1}, ${first.error ?? ''}`,
    );
  const invariants = Object.entries(r.invariants);
  const violated = invariants.filter(([, v]) => v.violations > 0);
  const held = invariants.filter(([, v]) => v.violations === 0);
  return `<section id="s${position}"><h2>${position}. ${esc(r.name)} <span class="badge ${verdict}">${badge}</span></h2>
<p class="meta">${esc(r.target)}${r.file !== undefined ? ` · ${esc(r.file)}` : ''} · ${r.trials} trial(s) · ${r.violatedTrials} raced · ${r.erroredTrials} errored${r.trials > 0 ? ` · latency p50 ${formatNumber(r.latencyMs.p50)} ms, p99 ${formatNumber(r.latencyMs.p99)} ms` : ''}</p>
${errors.map((e) => `<div class="error">${esc(e)}</div>`).join('')}
${violated
  .map(
    ([name, v]) =>
      `<div class="violation"><p><b>${esc(name)}</b> violated in ${v.violations}/${r.trials} trial(s)</p><p>${esc(v.example ?? '')}</p>${evidence(v.evidence, v.example ?? '')}</div>`,
  )
  .join('')}
${
  held.length === 0
    ? ''
    : verdict === 'errored'
      ? `<p class="meta">not violated where evaluated, but some trials proved nothing (above): ${held.map(([name]) => esc(name)).join(', ')}</p>`
      : `<p class="held">held in every trial: ${held.map(([name]) => esc(name)).join(', ')}</p>`
}
${
  r.trials > 0
    ? `${winners(r)}${perTrial(
        r.trialReports.map((t) => t.arrivalSpreadMs),
        'arrival spread at the server',
        '#6a51a3',
      )}${perTrial(
        r.trialReports.map((t) => t.sendSpreadMs),
        'client release spread',
        '#3f8f8f',
      )}${latencies(r.trialReports.flatMap((t) => t.latenciesMs))}`
    : ''
}
</section>`;
}

/**
 * Render reports as one HTML page that opens in a browser without a server.
 *
 * @example
 * ```ts
 * await writeFile('race-report.html', toHtml(reports));
 * ```
 */
export function toHtml(
  reports: readonly ScenarioReport[],
  generatedAt = new Date(),
  /** Pages of non-linearizable trial histories: `scenario index (1-based):trial (1-based)` to a relative URL. */
  historyPages: ReadonlyMap<string, string> = new Map(),
): string {
  const historyLinks = (scenario: number): string => {
    const links = [...historyPages].filter(([key]) => key.startsWith(`${scenario}:`));
    if (links.length === 0) return '';
    return `<p class="violation">Histories that are not linearizable: ${links
      .map(([key, href]) => `<a href="${esc(href)}">trial ${esc(key.split(':')[1]!)}</a>`)
      .join(', ')}</p>`;
  };
  const count = (v: Verdict): number => reports.filter((r) => verdictOf(r) === v).length;
  const summary = `<p class="summary">${reports.length} scenario(s): <span class="badge raced">${count('raced')} raced</span> <span class="badge errored">${count('errored')} without a verdict</span> <span class="badge clean">${count('clean')} clean</span></p>
<table><thead><tr><th>#</th><th>scenario</th><th>verdict</th><th class="n">trials</th><th class="n">raced</th><th class="n">errored</th></tr></thead><tbody>${reports
    .map((r, i) => {
      const v = verdictOf(r);
      return `<tr><td>${i + 1}</td><td><a href="#s${i + 1}">${esc(r.name)}</a></td><td><span class="badge ${v}">${{ raced: 'race', clean: 'clean', errored: 'no verdict' }[v]}</span></td><td class="n">${r.trials}</td><td class="n">${r.violatedTrials}</td><td class="n">${r.error !== undefined ? 'all' : r.erroredTrials}</td></tr>`;
    })
    .join('')}</tbody></table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raceguard run report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
h2{margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px;font-weight:600;vertical-align:middle}
.badge.raced{background:${COLOR.raced}}.badge.clean{background:${COLOR.clean}}.badge.errored{background:${COLOR.errored}}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}.n{text-align:right}
.error{border-left:4px solid ${COLOR.errored};background:#f4f4f4;padding:.5em .8em;margin:.6em 0}
.violation{border-left:4px solid ${COLOR.raced};background:#fdf1ef;padding:.3em .8em;margin:.6em 0}
.held{color:${COLOR.clean};font-size:13px}
pre{background:#fff;border:1px solid #e2e2e2;padding:.4em .6em;margin:.2em 0 .6em;font-size:12px;white-space:pre-wrap;word-break:break-word}
.label{font-size:11px;color:#666}.won{color:${COLOR.raced}}
table.evidence{width:100%;table-layout:fixed;background:#fff}table.evidence td{vertical-align:top}table.evidence th:nth-child(1){width:9em}table.evidence th:nth-child(2){width:4.5em}table.evidence pre{margin:0;max-height:9em;overflow:auto}
figure{margin:1.2em 0}figcaption{font-size:12px;color:#444;margin-bottom:.3em}
svg{width:100%;height:auto;background:#fcfcfc;font-family:system-ui,sans-serif}
.legend{font-size:12px;color:#444;margin-top:.3em}.legend span{margin-right:1.2em;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
.none{color:#888;font-size:12px}
</style>
</head><body><h1>raceguard run</h1><p class="meta">${esc(generatedAt.toISOString())} · trial and request numbers start at 1</p>
${summary}
${reports.map((r, i) => section(r, i + 1) + historyLinks(i + 1)).join('\n')}
</body></html>
`;
}
