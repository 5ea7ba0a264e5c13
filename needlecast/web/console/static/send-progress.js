/* A send followed without reloading the page, on a campaign's page and on the campaign list.
 *
 * A campaign's page: polls the campaign's status (JSON, from data-status on #send-banner) every two seconds
 * and puts the counts into the "Emails by state" table (#counts td[data-key]) and the outcome in words into
 * #send-said. When the send has ended it loads the page once more, which then says what the send did (and
 * runs no script).
 * The campaign list: each sending campaign's row (#campaigns tr[data-status]) is polled the same way and its
 * count cells (td[data-key]) updated in place; when its send ends the row says so (its state cell) and the
 * notice above the table (#list-progress) says what ended; the page itself is never reloaded. Without
 * JavaScript, the notice's "Refresh" link does the same by hand.
 * A lost connection is retried, more slowly each time; a session that ended reloads the page (it leads to the
 * log-in). Served from the console itself: the Content-Security-Policy allows no inline script.
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
    window
      .needlecastGet(statusUrl, "application/json", true) // the session ended, or the campaign is gone: reloaded
      .then(function (response) {
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

(function () {
  "use strict";
  var rows = document.querySelectorAll("#campaigns tr[data-status]");
  var notice = document.getElementById("list-progress");
  if (!rows.length || !notice) {
    return;
  }
  var running = rows.length;

  function show(row, status) {
    Object.keys(status.counts).forEach(function (key) {
      var cell = row.querySelector('td[data-key="' + key + '"]');
      if (cell) {
        cell.textContent = String(status.counts[key]);
      }
    });
  }

  function ended(row, status) {
    row.removeAttribute("data-status");
    row.setAttribute("data-state", "ended");
    var said = row.querySelector("[data-said]");
    if (said) {
      said.textContent = "Send ended: " + status.said;
    }
    running -= 1;
    if (running === 0) {
      notice.querySelector("[data-running]").textContent = "The send has ended: the counts below are final.";
    }
  }

  function follow(row) {
    var statusUrl = row.getAttribute("data-status");
    var failures = 0;

    function poll() {
      window
        .needlecastGet(statusUrl, "application/json", false) // the session ended: reloaded, to the log-in
        .then(function (response) {
          return response.json();
        })
        .then(function (status) {
          failures = 0;
          show(row, status);
          if (status.sending) {
            window.setTimeout(poll, 2000);
          } else {
            ended(row, status);
          }
        })
        .catch(function (error) {
          if (error.message !== "reloading") {
            failures += 1;
            window.setTimeout(poll, Math.min(30000, 2000 * Math.pow(2, failures)));
          }
        });
    }

    window.setTimeout(poll, 2000);
  }

  Array.prototype.forEach.call(rows, follow);
})();
