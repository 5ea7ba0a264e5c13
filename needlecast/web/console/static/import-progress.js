/* The import page while an import runs: its progress without reloading the page.
 *
 * Polls the import's status (JSON, from data-status on #import) about once a second and shows the stage,
 * the bar and the rows read so far. When the import has ended it fetches this page once more and puts its
 * result (#import-result: the counts, warnings and rejects link, or the error) in place, then sets
 * data-state on #import to "done" or "failed" (what a browser test waits on). A lost connection is retried,
 * more slowly each time; a session that ended, or a job the server no longer knows, reloads the page.
 * Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var box = document.getElementById("import");
  if (!box || box.getAttribute("data-state") !== "running") {
    return;
  }
  var statusUrl = box.getAttribute("data-status");
  var stage = document.getElementById("stage");
  var bar = document.getElementById("import-progress");
  var rows = document.getElementById("rows-read");
  var failures = 0;

  function show(status) {
    bar.value = status.percent;
    bar.textContent = status.percent + " %";
    rows.textContent = status.rows_text;
    if (stage.textContent !== status.stage_text) {
      stage.textContent = status.stage_text; // role=status: announced when the stage changes, not every count
    }
  }

  function getting(url, accept) {
    // The session ended (the page leads to the log-in), or the server restarted and forgot the job (the page
    // says so): either way the page, reloaded, says what to do next.
    return window.needlecastGet(url, accept, true);
  }

  function finish() {
    getting(window.location.href, "text/html")
      .then(function (response) {
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("import");
        var result = page.getElementById("import-result");
        if (!fresh || !result || fresh.getAttribute("data-state") === "running") {
          window.setTimeout(poll, 1000);
          return;
        }
        document.getElementById("import-result").replaceWith(document.importNode(result, true));
        bar.value = 100;
        bar.textContent = "100 %";
        rows.textContent = page.getElementById("rows-read").textContent;
        stage.textContent = page.getElementById("stage").textContent;
        box.setAttribute("data-state", fresh.getAttribute("data-state"));
      })
      .catch(retry);
  }

  function retry() {
    failures += 1;
    stage.textContent = "Lost contact with the server; trying again…";
    window.setTimeout(poll, Math.min(30000, 1000 * Math.pow(2, failures)));
  }

  function poll() {
    getting(statusUrl, "application/json")
      .then(function (response) {
        return response.json();
      })
      .then(function (status) {
        failures = 0;
        show(status);
        if (status.state === "running") {
          window.setTimeout(poll, 1000);
        } else {
          finish();
        }
      })
      .catch(retry);
  }

  poll();
})();
