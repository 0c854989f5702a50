// Drives the operations console (ingest's /console) in headless Chromium
// against a running pipeline with vodsim. Started by web/console_test.go,
// which prepared the jobs and checks the outcome in the pipeline itself.
// Input (environment): BASE (ingest's URL), ADMIN_KEY, READ_KEY, SLOW (a
// job uploading slowly), OTHER (a job to cancel), DEAD (the job of a dead
// letter whose source now exists), SUB (a webhook subscription), VODSIM
// (vodsim's URL, for its bandwidth), OUT (folder for the screenshots).
// Output: one JSON line on stdout.
import { chromium } from "playwright-core";

const env = process.env;
const out = { ok: false, steps: [] };
const step = (s) => out.steps.push(s);
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage"],
});

let current; // the page in use, for the error's report
async function signIn(page, key) {
  current = page;
  await page.goto(env.BASE + "/console");
  if (!page.url().includes("/console/login")) throw new Error("no sign-in page: " + page.url());
  // Keyboard only: the key field takes the focus by itself (autofocus,
  // applied once the page has rendered); Enter submits.
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "key", null, { timeout: 5000 });
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/console$/);
}

const stateOf = (page, id) => page.locator(`[data-state="${id}"]`).first().textContent();
async function waitState(page, id, want, ms = 60000) {
  await page.waitForFunction(([id, want]) => {
    const el = document.querySelector(`[data-state="${CSS.escape(id)}"]`);
    return el && want.includes(el.textContent.trim());
  }, [id, want], { timeout: ms, polling: 100 });
}
async function bandwidth(bps) {
  const f = await (await fetch(env.VODSIM + "/vodsim/faults")).json();
  const r = await fetch(env.VODSIM + "/vodsim/faults", { method: "PUT", body: JSON.stringify({ ...f, bandwidth: bps }) });
  if (!r.ok) throw new Error("vodsim faults: " + r.status);
}

try {
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await admin.newPage();
  page.on("dialog", (d) => d.accept()); // the cancel confirmation
  await signIn(page, env.ADMIN_KEY);
  step("signed in");

  // The overview, live: the slow job shows under its worker.
  await page.locator(`[data-progress="${env.SLOW}"]`).first().waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${env.OUT}/console-overview.png`, fullPage: true });
  step("overview");

  // The slow job's bar moves without a reload.
  await page.goto(`${env.BASE}/console/jobs/${env.SLOW}`);
  const bar = page.locator(`progress[data-progress="${env.SLOW}"]`);
  const first = Number(await bar.getAttribute("value"));
  await page.evaluate(() => { window.__notReloaded = true; });
  await page.waitForFunction(([id, v]) => {
    const el = document.querySelector(`progress[data-progress="${CSS.escape(id)}"]`);
    return el && el.value > v && window.__notReloaded;
  }, [env.SLOW, first], { timeout: 30000, polling: 100 });
  out.progress = [first, await page.evaluate((id) => document.querySelector(`progress[data-progress="${CSS.escape(id)}"]`).value, env.SLOW)];
  await page.screenshot({ path: `${env.OUT}/console-job.png`, fullPage: true });
  step("progress moved");

  // Pause, then resume it.
  await page.getByRole("button", { name: "pause" }).click();
  await waitState(page, env.SLOW, ["paused"]);
  out.paused = await stateOf(page, env.SLOW);
  step("paused");
  await page.getByRole("button", { name: "resume" }).click();
  await waitState(page, env.SLOW, ["queued", "running"]);
  step("resumed");

  // Cancel the other job.
  await page.goto(`${env.BASE}/console/jobs/${env.OTHER}`);
  await page.getByRole("button", { name: "cancel" }).click();
  await waitState(page, env.OTHER, ["canceled"]);
  step("canceled");

  // Let the uploads finish.
  await bandwidth(0);
  await page.goto(`${env.BASE}/console/jobs/${env.SLOW}`);
  await waitState(page, env.SLOW, ["completed"]);
  step("slow job completed");

  // Requeue the dead letter; its job completes.
  await page.goto(`${env.BASE}/console/dead-letters`);
  await page.locator("tr", { hasText: env.DEAD }).getByRole("button", { name: "requeue" }).click();
  await page.waitForURL(new RegExp(`/console/jobs/${env.DEAD}`));
  await waitState(page, env.DEAD, ["completed"]);
  out.requeued = await stateOf(page, env.DEAD);
  step("dead letter requeued and completed");

  // Replay a delivery of the subscription; the replayed attempt is listed.
  await page.goto(`${env.BASE}/console/webhooks/${env.SUB}`);
  const rows = page.locator("table.attempts tbody tr");
  await rows.first().waitFor();
  const before = await rows.count();
  await page.getByRole("button", { name: "replay" }).first().click();
  await page.waitForURL(/done=replay/);
  for (let i = 0; i < 100; i++) {
    await page.goto(`${env.BASE}/console/webhooks/${env.SUB}`);
    if (await page.locator("table.attempts tbody tr", { hasText: "replay rp_" }).count() > 0) break;
    await page.waitForTimeout(100);
  }
  out.attempts = [before, await rows.count()];
  out.replayed = await page.locator("table.attempts tbody tr", { hasText: "replay rp_" }).count();
  step("replayed");

  // A forged action: the session's cookie, no CSRF token.
  out.forged = await page.evaluate(async (id) => (await fetch(`/console/jobs/${id}/cancel`, { method: "POST" })).status, env.SLOW);
  step("forged refused");

  // A read-only key sees no action.
  const ro = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const rop = await ro.newPage();
  await signIn(rop, env.READ_KEY);
  out.readOnlyButtons = 0;
  for (const path of [`/console/jobs/${env.OTHER}`, `/console/jobs/${env.SLOW}`, "/console/dead-letters", `/console/webhooks/${env.SUB}`]) {
    await rop.goto(env.BASE + path);
    out.readOnlyButtons += await rop.locator("main button").count();
  }
  step("read-only");

  // A narrow screen: nothing wider than it.
  const narrow = await browser.newContext({ viewport: { width: 375, height: 800 }, isMobile: true });
  const np = await narrow.newPage();
  await signIn(np, env.ADMIN_KEY);
  out.overflow = {};
  for (const path of ["/console", "/console/jobs", `/console/jobs/${env.SLOW}`, `/console/webhooks/${env.SUB}`]) {
    await np.goto(env.BASE + path);
    out.overflow[path] = await np.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  }
  await np.goto(env.BASE + "/console");
  await np.screenshot({ path: `${env.OUT}/console-narrow.png`, fullPage: true });
  step("narrow");
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack || e);
  if (current) out.page = await current.locator("main").innerText().catch(() => "");
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
