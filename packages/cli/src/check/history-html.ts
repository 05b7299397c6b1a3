/**
 * A self-contained HTML page (inline SVG and CSS, no scripts, no network)
 * for one checked history: for linearizability, every operation as a bar
 * from its invocation to its completion on its client's lane, the minimal
 * non-linearizable prefix highlighted and the operation whose return breaks
 * it in red; for a transactional history, every anomaly with its cycle and
 * the transactions on a timeline when they carry times.
 */
import type { Anomaly, Operation, Transaction } from 'raceguard/check';
import { esc } from '../run/report-html.js';

const show = (value: unknown): string => (value === undefined ? '?' : JSON.stringify(value));

/** `write 3`, `cas 1 2`, `get "k"`: an input with an `op` reads as the op and its arguments. */
function opText(input: unknown): string {
  if (typeof input !== 'object' || input === null || !('op' in input)) return show(input);
  const { op, ...rest } = input as Record<string, unknown>;
  const args = Object.values(rest).map(show).join(' ');
  return args === '' ? String(op) : `${String(op)} ${args}`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
.verdict{display:inline-block;padding:2px 8px;border-radius:4px;color:#fff}
.bad{background:#c0392b}.good{background:#2e8b57}.unknown{background:#8a8a8a}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
svg text{font:11px system-ui,sans-serif}`;

const LANE = 28;
const LEFT = 90;
const WIDTH = 960;

interface Bar {
  readonly lane: string;
  readonly start: number;
  readonly end: number;
  readonly label: string;
  readonly fill: string;
  readonly dashed: boolean;
  readonly title: string;
}

function timeline(bars: readonly Bar[]): string {
  if (bars.length === 0) return '';
  const lanes = [...new Set(bars.map((bar) => bar.lane))];
  const finite = bars.flatMap((bar) => [bar.start, ...(Number.isFinite(bar.end) ? [bar.end] : [])]);
  const min = Math.min(...finite);
  const max = Math.max(...finite, min + 1);
  const span = (max - min) * 1.05;
  const x = (time: number) =>
    LEFT + ((Math.min(time, min + span) - min) / span) * (WIDTH - LEFT - 10);
  const height = lanes.length * LANE + 30;
  const parts: string[] = [];
  lanes.forEach((lane, index) => {
    const y = 10 + index * LANE;
    parts.push(
      `<text x="4" y="${y + 16}">${esc(lane)}</text><line x1="${LEFT}" x2="${WIDTH - 10}" y1="${y + LANE - 4}" y2="${y + LANE - 4}" stroke="#eee"/>`,
    );
  });
  for (const bar of bars) {
    const y = 10 + lanes.indexOf(bar.lane) * LANE;
    const x1 = x(bar.start);
    const x2 = Math.max(x1 + 3, x(Number.isFinite(bar.end) ? bar.end : min + span));
    parts.push(
      `<g><title>${esc(bar.title)}</title><rect x="${x1.toFixed(1)}" y="${y + 2}" width="${(x2 - x1).toFixed(1)}" height="${LANE - 10}" rx="3" fill="${bar.fill}" stroke="#333" stroke-width="0.5"${bar.dashed ? ' stroke-dasharray="4 2" fill-opacity="0.5"' : ''}/>` +
        `<text x="${(x1 + 3).toFixed(1)}" y="${y + 15}">${esc(bar.label)}</text></g>`,
    );
  }
  parts.push(
    `<text x="${LEFT}" y="${height - 6}">${esc(String(min))}</text><text x="${WIDTH - 10}" y="${height - 6}" text-anchor="end">${esc(String(Math.round(min + span)))} (time)</text>`,
  );
  return `<svg width="${WIDTH}" height="${height}" role="img" aria-label="timeline">${parts.join('')}</svg>`;
}

const COLOURS = { culprit: '#c0392b', prefix: '#f5b041', other: '#d6dbdf' };

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>\n`;
}

/** The page for a linearizability verdict. */
export function linearizabilityHtml(details: {
  readonly file: string;
  readonly model: string;
  readonly verdict: string;
  readonly operations: readonly Operation[];
  readonly violating?: readonly Operation[];
  readonly minimalPrefix?: readonly Operation[];
  readonly culprit?: Operation;
}): string {
  const prefix = new Set(details.minimalPrefix ?? []);
  const shown = details.violating ?? details.operations;
  const bars: Bar[] = shown.map((op) => {
    const fill =
      op === details.culprit ? COLOURS.culprit : prefix.has(op) ? COLOURS.prefix : COLOURS.other;
    const label = `${opText(op.input)} → ${show(op.output)}`;
    return {
      lane: `client ${op.client}`,
      start: op.call,
      end: op.return,
      label,
      fill,
      dashed: op.output === undefined,
      title: `client ${op.client}: ${label} [${op.call}, ${op.return}]`,
    };
  });
  const cls =
    details.verdict === 'linearizable'
      ? 'good'
      : details.verdict === 'not-linearizable'
        ? 'bad'
        : 'unknown';
  const culprit = details.culprit;
  const body =
    `<h1>${esc(details.file)}</h1><p>model <b>${esc(details.model)}</b>, ${details.operations.length} operations: <span class="verdict ${cls}">${esc(details.verdict)}</span></p>` +
    (details.violating === undefined
      ? ''
      : `<p>${details.violating.length} operations in the part that has no linearization${details.minimalPrefix === undefined ? '' : `; the shortest failing prefix holds ${details.minimalPrefix.length}`}.` +
        (culprit === undefined
          ? ''
          : ` No order of the operations before it explains <b>${esc(`client ${culprit.client}: ${opText(culprit.input)} → ${show(culprit.output)}`)}</b>, completed at ${culprit.return}.`) +
        '</p>') +
    `<p class="legend"><span style="background:${COLOURS.culprit}"></span>breaks linearizability<span style="background:${COLOURS.prefix}"></span>shortest failing prefix<span style="background:${COLOURS.other}"></span>other operations (dashed: outcome unknown)</p>` +
    timeline(bars) +
    '<h2>Operations</h2><table><tr><th>client</th><th>input</th><th>output</th><th>call</th><th>return</th></tr>' +
    shown
      .map(
        (op) =>
          `<tr${op === culprit ? ' style="background:#f5b7b1"' : prefix.has(op) ? ' style="background:#fdebd0"' : ''}><td>${esc(String(op.client))}</td><td>${esc(show(op.input))}</td><td>${esc(show(op.output))}</td><td>${op.call}</td><td>${op.return}</td></tr>`,
      )
      .join('') +
    '</table>';
  return page(`${details.file}: ${details.verdict}`, body);
}

/** The page for a transactional history's anomalies. */
export function anomaliesHtml(details: {
  readonly file: string;
  readonly workload: string;
  readonly transactions: readonly Transaction[];
  readonly anomalies: readonly Anomaly[];
}): string {
  const involved = new Set(details.anomalies.flatMap((anomaly) => anomaly.transactions));
  const bars: Bar[] = details.transactions.flatMap((txn, index) =>
    txn.start === undefined || txn.end === undefined || !involved.has(index)
      ? []
      : [
          {
            lane: `process ${txn.process}`,
            start: txn.start,
            end: txn.end,
            label: `T${index}`,
            fill: COLOURS.culprit,
            dashed: txn.status !== 'ok',
            title: `T${index} (${txn.status}): ${txn.ops.map((op) => `${op.f} ${op.key} ${show(op.value)}`).join(', ')}`,
          },
        ],
  );
  const cls = details.anomalies.length === 0 ? 'good' : 'bad';
  const body =
    `<h1>${esc(details.file)}</h1><p>workload <b>${esc(details.workload)}</b>, ${details.transactions.length} transactions: <span class="verdict ${cls}">${details.anomalies.length === 0 ? 'no anomaly' : `${details.anomalies.length} anomalies`}</span></p>` +
    timeline(bars) +
    details.anomalies
      .map(
        (anomaly) =>
          `<h2>${esc(anomaly.type)}</h2><p>${esc(anomaly.explanation)}</p><table><tr><th>transaction</th><th>process</th><th>status</th><th>operations</th></tr>` +
          anomaly.transactions
            .map((index) => {
              const txn = details.transactions[index]!;
              return `<tr><td>T${index}</td><td>${esc(String(txn.process))}</td><td>${txn.status}</td><td>${esc(txn.ops.map((op) => `${op.f} ${op.key} ${show(op.value)}`).join(', '))}</td></tr>`;
            })
            .join('') +
          '</table>',
      )
      .join('');
  return page(`${details.file}: ${details.anomalies.length} anomalies`, body);
}
