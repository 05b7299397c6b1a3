/**
 * The HTML report in a real browser: Debian's Chromium, headless, renders
 * the report of a real run (a race, a clean fix, a burst that proved
 * nothing); the test reads the rendered DOM and the screenshot's pixels.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toHtml } from '../../packages/cli/src/run/report-html.js';
import { runScenario, type ScenarioReport } from '../../packages/cli/src/run/run-scenario.js';
import { atMostWinners, defineScenario } from '../../packages/raceguard/src/run/index.js';
import { CHROMIUM, chromium } from '../helpers/chromium.js';
import { countColour, decodePng } from '../helpers/png.js';
import { startShop } from '../helpers/shop.js';

describe(
  'the HTML report in a browser',
  { skip: CHROMIUM === undefined && 'chromium is not installed' },
  () => {
    const shop = startShop();
    let dir: string;
    let reports: ScenarioReport[];

    before(async () => {
      shop.server.listen(0, '127.0.0.1');
      await new Promise((listening) => shop.server.once('listening', listening));
      const target = `http://127.0.0.1:${(shop.server.address() as AddressInfo).port}`;
      dir = await mkdtemp(join(tmpdir(), 'raceguard-html-'));
      const buy = (name: string, path: string) =>
        defineScenario({
          name,
          target,
          trials: 4,
          setup: async ({ http }) => {
            await http({ method: 'POST', path: '/reset', json: { stock: 1 } });
          },
          burst: { count: 20, request: (i) => ({ path, json: { buyer: `b-${i}` } }) },
          check: ({ responses }) => [atMostWinners(responses, 1)],
        });
      reports = [
        await runScenario(buy('racy purchase', '/buy/unsafe')),
        await runScenario(buy('atomic purchase', '/buy/safe')),
        await runScenario(buy('mistyped path', '/buy/nowhere')),
      ];
    });
    after(async () => {
      shop.server.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('shows the summary first, the evidence of the race, and charts coloured by verdict', async () => {
      assert.equal(reports[0]?.violatedTrials, 4, 'control: the racy endpoint raced');
      const file = join(dir, 'report.html');
      await writeFile(file, toHtml(reports));
      const dom = chromium(dir, '--dump-dom', `file://${file}`);
      assert.equal(dom.status, 0, dom.stderr);
      // The summary comes before the first scenario's section.
      const summary = dom.stdout.indexOf('3 scenario(s)');
      assert.ok(summary > 0 && summary < dom.stdout.indexOf('<section'), 'summary at the top');
      assert.match(dom.stdout, /1 raced<\/span> <span class="badge errored">1 without a verdict/);
      // Evidence: the winners' request and response bodies, pretty-printed.
      assert.match(dom.stdout, /evidence: responses of trial 1/);
      assert.match(dom.stdout, /<pre>\{\n {2}"buyer": "b-\d+"\n\}<\/pre>/);
      assert.match(dom.stdout, /no request succeeded: every response was 404/);
      // Every chart has axes labels and a legend.
      const charts = dom.stdout.match(/<figure>/g)?.length ?? 0;
      const legends = dom.stdout.match(/<div class="legend">/g)?.length ?? 0;
      assert.ok(charts >= 6, `${charts} charts`);
      assert.equal(legends, charts);
      const screenshot = join(dir, 'report.png');
      const shot = chromium(
        dir,
        '--window-size=900,4000',
        `--screenshot=${screenshot}`,
        `file://${file}`,
      );
      assert.equal(shot.status, 0, shot.stderr);
      const image = decodePng(await readFile(screenshot));
      assert.equal(image.width, 900);
      // The racy trials' winners are drawn red, the fix's green, and nothing is drawn in the old 2xx green.
      const red = countColour(image, '#c0392b');
      const green = countColour(image, '#2e8b57');
      assert.ok(red > 2000, `${red} red pixels`);
      assert.ok(green > 200, `${green} green pixels`);
      assert.equal(countColour(image, '#3a9a5b'), 0);
    });
  },
);
