// Culvert's dashboard script: keeps the executions list and an execution's
// DAG current. Everything it inserts is HTML the server rendered (and
// escaped); it builds no markup from data itself. Served from /ui/assets,
// as the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // Replace the contents of `el` with the fragment at `url`.
  function load(url, el) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) { el.innerHTML = html; });
  }

  // The executions list: refreshed every 2 s while the page is visible.
  var rows = document.getElementById("execution-rows");
  if (rows && rows.dataset.refresh) {
    window.setInterval(function () {
      if (!document.hidden) { load(rows.dataset.refresh, rows).catch(function () {}); }
    }, 2000);
  }

  // One execution: its events stream in (Server-Sent Events); each event
  // reloads the status, DAG and task table, at most every 250 ms.
  var live = document.getElementById("live");
  if (live && live.dataset.stream && window.EventSource) {
    var queued = false;
    var refresh = function () {
      if (queued) { return; }
      queued = true;
      window.setTimeout(function () {
        queued = false;
        load(live.dataset.fragment, live).catch(function () {});
      }, 250);
    };
    var source = new EventSource(live.dataset.stream);
    ["created", "task_ready", "claimed", "completed", "failed", "skipped",
     "retry_scheduled", "lease_expired", "recovered", "cancelled", "retried",
     "execution_completed", "execution_failed", "execution_cancelled"]
      .forEach(function (kind) { source.addEventListener(kind, refresh); });
    source.addEventListener("end", function () {
      source.close();
      var cancel = document.getElementById("cancel");
      if (cancel) { cancel.hidden = true; }
      load(live.dataset.fragment, live).catch(function () {});
    });
  }

  // The operator's tenant picker switches on change.
  var pick = document.getElementById("tenant-switch");
  if (pick) {
    pick.addEventListener("change", function () { pick.form.submit(); });
  }
})();
