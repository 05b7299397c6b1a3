/** JUnit XML for CI: one test suite per scenario, one test case per invariant. */
import type { ScenarioReport } from './run-scenario.js';

// Control characters other than tab, LF and CR: XML 1.0 cannot carry them.
// eslint-disable-next-line no-control-regex
const INVALID_XML = new RegExp('[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]', 'g');

function xml(text: string): string {
  return (
    text
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      // Characters XML 1.0 cannot carry at all.
      .replace(INVALID_XML, '')
  );
}

/**
 * Render reports as JUnit XML. An invariant violated in any trial is a
 * `<failure>` carrying the count and the first explanation; trials that
 * could not run, and a scenario that could not load, connect or finish
 * (interrupted, not run), are an `<error>`.
 *
 * @example
 * ```ts
 * await writeFile('race-report.xml', toJUnit(reports));
 * ```
 */
export function toJUnit(reports: readonly ScenarioReport[]): string {
  const suites = reports.map((report) => {
    const cases = Object.entries(report.invariants).map(([name, entry]) => {
      const body =
        entry.violations > 0
          ? `<failure message="${xml(`violated in ${entry.violations}/${report.trials} trials`)}" type="race">${xml(entry.example ?? '')}</failure>`
          : '';
      return `    <testcase classname="${xml(report.name)}" name="${xml(name)}">${body}</testcase>`;
    });
    // A scenario that could not load, connect or finish: an error, never an empty green suite.
    if (report.error !== undefined) {
      cases.push(
        `    <testcase classname="${xml(report.name)}" name="scenario"><error message="${xml(report.error)}">${xml(report.file ?? '')}</error></testcase>`,
      );
    }
    if (report.erroredTrials > 0) {
      const first = report.trialReports.find((t) => t.error !== undefined);
      cases.push(
        `    <testcase classname="${xml(report.name)}" name="trials"><error message="${xml(`${report.erroredTrials} trial(s) could not run`)}">${xml(first?.error ?? '')}</error></testcase>`,
      );
    }
    const failures = Object.values(report.invariants).filter((e) => e.violations > 0).length;
    const errors = (report.erroredTrials > 0 ? 1 : 0) + (report.error !== undefined ? 1 : 0);
    return `  <testsuite name="${xml(report.name)}" tests="${cases.length}" failures="${failures}" errors="${errors}">\n${cases.join('\n')}\n  </testsuite>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="raceguard run">\n${suites.join('\n')}\n</testsuites>\n`;
}
