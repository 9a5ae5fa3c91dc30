// Loads one page in Debian's chromium (headless, a fresh profile) and
// prints one JSON object: the page's result (window.wsAgentResult, set by
// the page when it is done), the WebSocket handshake as Chromium made and
// saw it (from the DevTools protocol), the console, Chromium's version.
//
//   node drive.js URL PROFILE_DIR CHROMIUM TIMEOUT_MS
//
// Run by t/lib/WsAgent/Browser.pm. It never downloads a browser: the
// executable is given, and playwright-core ships none.

'use strict';

const { chromium } = require('playwright-core');

const [url, profile, executablePath, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg) || 20000;

const out = { console: [], handshake: {} };

async function main() {
    const started = Date.now();
    const context = await chromium.launchPersistentContext(profile, {
        executablePath,
        headless: true,
        timeout,
        args: ['--no-sandbox', '--disable-gpu',
               '--disable-background-networking',
               '--disable-component-update', '--disable-sync'],
    });
    try {
        const page = context.pages()[0] || await context.newPage();
        page.on('console', (m) => out.console.push(m.type() + ': ' + m.text()));
        page.on('pageerror', (e) => out.console.push('pageerror: ' + e.message));

        const cdp = await context.newCDPSession(page);
        out.chromium = (await cdp.send('Browser.getVersion')).product;
        await cdp.send('Network.enable');
        cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
            out.handshake.request = e.request.headers;
        });
        cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
            out.handshake.status = e.response.status;
            out.handshake.response = e.response.headers;
        });

        await page.goto(url, { timeout });
        await page.waitForFunction(() => window.wsAgentResult !== undefined,
                                   null, { timeout });
        out.page = await page.evaluate(() => window.wsAgentResult);
    } finally {
        out.ms = Date.now() - started;
        await context.close();
    }
}

// what was seen so far goes out with the error: the console says why
main().catch((err) => {
    out.error = String((err && err.stack) || err);
    process.exitCode = 1;
}).finally(() => {
    process.stdout.write(JSON.stringify(out) + '\n');
});
