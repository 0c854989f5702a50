// Drives the upload page in headless Chromium with Tencent's official web SDK
// against vodsim. Started by web/browser_test.go, which checks the outcome.
// Input (environment): PAGE_URL, VOD_TLS_ADDR (vodsim over TLS, as
// vod2.qcloud.com), COS_ADDR (vodsim over http, as the COS bucket hosts),
// VIDEO, COVER (files to upload), OUT (folder for the screenshot), MODE
// ("upload" or "refused"). Output: one JSON line on stdout.
import { chromium } from "playwright-core";

const env = process.env;
const [vodHost, vodPort] = env.VOD_TLS_ADDR.split(":");
const [cosHost, cosPort] = env.COS_ADDR.split(":");
const rules = [
  `MAP vod2.qcloud.com ${vodHost}:${vodPort}`,
  `MAP vod2.dnsv1.com ${vodHost}:${vodPort}`,
  `MAP *.myqcloud.com ${cosHost}:${cosPort}`,
  `EXCLUDE 127.0.0.1`,
].join(",");

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    `--host-resolver-rules=${rules}`, "--ignore-certificate-errors",
    "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults"],
});
const out = { ok: false };

// admin calls vodsim's admin API.
async function admin(method, path, body) {
  const r = await fetch(`http://${env.COS_ADDR}${path}`, { method, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`vodsim ${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

// stored reads vodsim's admin API: the bytes and numbers of the parts of the
// video's open multipart upload (the cover is a separate object), and how
// many files have been committed.
async function stored() {
  const videoKeys = new Set((await admin("GET", "/vodsim/sessions")).map((x) => x.bucket + "/" + x.videoKey));
  const uploads = (await admin("GET", "/vodsim/uploads")).filter((u) => videoKeys.has(u.bucket + "/" + u.key));
  const files = await admin("GET", "/vodsim/files");
  let bytes = 0;
  const parts = [];
  for (const u of uploads) for (const p of u.parts || []) { bytes += p.size; parts.push(p.partNumber); }
  return { bytes, parts, uploads: uploads.length, files: files.length };
}

const page = await browser.newPage({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 900 } });
const logs = [];
page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
try {
  await page.goto(env.PAGE_URL, { waitUntil: "load" });
  await page.setInputFiles("#video", env.VIDEO);
  if (env.COVER) await page.setInputFiles("#cover", env.COVER);
  await page.waitForFunction(() => !document.getElementById("start").disabled, null, { timeout: 15000 });
  await page.click("#start");
  if (env.MODE === "refused") {
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Signature refused"), null, { timeout: 30000 });
    out.status = await page.textContent("#status");
    out.ok = true;
  } else {
    // Pause once vodsim has stored a first part of the video, then resume:
    // the SDK continues its stored session. The page's bar cannot tell when:
    // it counts bytes handed to the browser's sockets, and loopback buffers
    // take most of the file within a second (the bar read 96 % while vodsim
    // had about a tenth, and 100 % on a CI run, long before the commit).
    const deadline = Date.now() + 60000;
    while ((await stored()).bytes === 0) {
      if (Date.now() > deadline) throw new Error("vodsim stored no part of the video within 60 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    // vodsim slows to a trickle while the pause lands, so however slow this
    // machine, the upload cannot finish first; its bandwidth comes back
    // before the resume.
    const faults = await admin("GET", "/vodsim/faults");
    await admin("PUT", "/vodsim/faults", { ...faults, bandwidth: 16384 });
    await page.click("#pause");
    out.pausedAt = await page.evaluate(() => document.getElementById("bar").value);
    await page.waitForFunction(() => !document.getElementById("resume").disabled, null, { timeout: 30000 });
    out.atPause = await stored();
    await admin("PUT", "/vodsim/faults", faults);
    await page.click("#resume");
    await page.waitForFunction(() => document.getElementById("fileId").textContent !== "", null, { timeout: 120000, polling: 50 });
    out.fileId = await page.textContent("#fileId");
    out.mediaUrl = await page.textContent("#mediaUrl");
    out.coverUrl = await page.textContent("#coverUrl");
    out.signatures = await page.evaluate(() => window.vodpipeState.signatures);
    if (env.EXPECT_EVENT === "1") {
      await page.waitForFunction(() => !document.getElementById("event").hidden, null, { timeout: 30000, polling: 50 });
      out.event = {
        fileId: await page.textContent("#evFileId"),
        sourceContext: await page.textContent("#evSourceContext"),
        procedureTaskId: await page.textContent("#evTaskId"),
      };
    }
    out.ok = true;
  }
} catch (e) {
  out.error = String(e && e.message || e);
  out.status = await page.textContent("#status").catch(() => "");
} finally {
  if (env.OUT) await page.screenshot({ path: `${env.OUT}/upload-${env.MODE || "upload"}.png`, fullPage: true }).catch(() => {});
  out.logs = logs.slice(-30);
  await browser.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}
