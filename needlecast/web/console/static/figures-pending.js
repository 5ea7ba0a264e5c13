/* Figures the console is still working out (a plan of 200,000 people, the home page's figures, every
 * segment's size), put in place without reloading the page.
 *
 * A part of a page marked data-figure (with an id) shows either a placeholder ("Working out who gets this
 * email… this page updates when it is ready": data-figure-state="working") or a kept figure that is being
 * worked out again ("Figures as of 21:14; updating": data-figure-state="updating"). While any part is
 * "working", this script fetches the page itself every two seconds (more slowly after a failure) and, once
 * the page it gets back has that part ready, puts the part in place (by id). A part only "updating" is
 * fetched a few times and then left as it is: its "as of" time says how old it is.
 * Nothing is fetched when no part is pending. When every part is in place, data-figures="ready" is set on
 * the body (what a browser test waits on). A session that ended reloads the page (it leads to the log-in).
 * Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var UPDATING_TRIES = 5;
  var tries = 0;
  var failures = 0;

  function pending(root) {
    return root.querySelectorAll('[data-figure][data-figure-state="working"], [data-figure][data-figure-state="updating"]');
  }

  function working(root) {
    return root.querySelectorAll('[data-figure][data-figure-state="working"]').length > 0;
  }

  if (!pending(document).length) {
    return;
  }

  function putInPlace(page) {
    Array.prototype.forEach.call(pending(document), function (part) {
      var fresh = part.id ? page.getElementById(part.id) : null;
      if (fresh && fresh.getAttribute("data-figure-state") !== "working") {
        part.replaceWith(document.importNode(fresh, true));
      }
    });
  }

  function next() {
    if (!pending(document).length) {
      document.body.setAttribute("data-figures", "ready");
      return;
    }
    if (!working(document) && tries >= UPDATING_TRIES) {
      return; // only older figures shown: their "as of" says how old; a reload shows the newest
    }
    window.setTimeout(poll, Math.min(30000, 2000 * Math.pow(2, failures)));
  }

  function poll() {
    tries += 1;
    window
      .needlecastGet(window.location.href, "text/html", false) // the session ended: reloaded, to the log-in
      .then(function (response) {
        return response.text();
      })
      .then(function (html) {
        failures = 0;
        putInPlace(new DOMParser().parseFromString(html, "text/html"));
        next();
      })
      .catch(function (error) {
        if (error.message !== "reloading") {
          failures += 1;
          next();
        }
      });
  }

  next();
})();
