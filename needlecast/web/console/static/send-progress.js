/* A campaign's page while it sends: the counts and the outcome so far, without reloading the page.
 *
 * Polls the campaign's status (JSON, from data-status on #send-banner) every two seconds and puts the counts
 * into the "Emails by state" table (#counts td[data-key]) and the outcome in words into #send-said. When the
 * send has ended it loads the page once more, which then says what the send did (and runs no script). A lost
 * connection is retried, more slowly each time; a session that ended reloads the page (it leads to the log-in).
 * Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var banner = document.getElementById("send-banner");
  if (!banner || banner.getAttribute("data-state") !== "sending") {
    return;
  }
  var statusUrl = banner.getAttribute("data-status");
  var said = document.getElementById("send-said");
  var failures = 0;

  function show(status) {
    Object.keys(status.counts).forEach(function (key) {
      var cell = document.querySelector('#counts td[data-key="' + key + '"]');
      if (cell) {
        cell.textContent = String(status.counts[key]);
      }
    });
    said.textContent = status.said;
  }

  function retry() {
    failures += 1;
    window.setTimeout(poll, Math.min(30000, 2000 * Math.pow(2, failures)));
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.redirected || response.status === 404) {
          window.location.reload(); // the session ended, or the campaign is gone: the page says so
          throw new Error("reloading");
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (status) {
        failures = 0;
        show(status);
        if (status.sending) {
          window.setTimeout(poll, 2000);
        } else {
          banner.setAttribute("data-state", "ended");
          window.location.reload(); // once: the page now says what the send did
        }
      })
      .catch(function (error) {
        if (error.message !== "reloading") {
          retry();
        }
      });
  }

  window.setTimeout(poll, 2000);
})();
