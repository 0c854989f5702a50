// vodpipe console: live updates over /console/events (server-sent events),
// confirmations. The pages work without it; it only keeps them current.
(function () {
  "use strict";
  const live = document.body.dataset.live;
  if (live === undefined) return;

  // Confirm destructive actions.
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }

  const pct = (done, total) => (total > 0 ? Math.round((100 * done) / total) : 0) + "%";
  const sel = (attr, id) => document.querySelectorAll("[" + attr + '="' + CSS.escape(id) + '"]');

  function progress(ev) {
    for (const el of sel("data-progress", ev.jobId)) {
      el.max = ev.bytesTotal;
      el.value = ev.bytesDone;
      el.textContent = pct(ev.bytesDone, ev.bytesTotal);
    }
    for (const el of sel("data-progress-text", ev.jobId)) el.textContent = pct(ev.bytesDone, ev.bytesTotal);
  }

  const states = {
    "job.queued": "queued", "job.started": "running", "job.resumed": "queued", "job.paused": "paused",
    "job.canceled": "canceled", "job.failed": "failed", "job.completed": "completed",
  };

  // A page whose numbers or lists an event changes is read again (not more
  // than once every refreshMs) and its main part swapped in place.
  const refreshMs = live === "overview" ? 2000 : 700;
  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try {
        const r = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!r.ok || r.redirected) return;
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const fresh = doc.getElementById("main");
        const main = document.getElementById("main");
        if (fresh && main && !main.contains(document.activeElement)) {
          main.replaceChildren(...fresh.childNodes);
          for (const f of main.querySelectorAll("form[data-confirm]")) {
            f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
          }
        }
      } catch (_) { /* the next event tries again */ }
    }, refreshMs);
  }

  function state(type, ev) {
    const st = states[type];
    let mine = false;
    if (st) {
      for (const el of sel("data-state", ev.jobId)) {
        el.textContent = st;
        el.className = "state state-" + st;
        mine = true;
      }
    }
    const jobPage = document.querySelector("[data-job]");
    if (live === "overview" || (jobPage && jobPage.dataset.job === ev.jobId) || (mine && live === "jobs")) refresh();
  }

  const status = document.getElementById("live");
  const es = new EventSource("/console/events");
  // The server follows the events before it answers: once the stream is
  // open, a read of the page catches what changed since it was rendered (or
  // while the stream was down), which no event on the stream will tell.
  es.onopen = () => {
    if (status) status.textContent = "live";
    refresh();
  };
  es.onerror = () => { if (status) status.textContent = "reconnecting…"; };
  es.addEventListener("job.progress", (e) => progress(JSON.parse(e.data)));
  for (const t of [...Object.keys(states), "vod.file_uploaded", "vod.procedure_changed"]) {
    es.addEventListener(t, (e) => state(t, JSON.parse(e.data)));
  }
})();
