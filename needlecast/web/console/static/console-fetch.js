/* One way for the console's own scripts to ask the server for a page or its status while a person watches it,
 * shared by the import and send progress and the figures being worked out (served from the console itself:
 * the Content-Security-Policy allows no inline script).
 *
 * window.needlecastGet(url, accept, reloadWhenGone) fetches `url` (same-origin, never from the cache, asking
 * for `accept`) and resolves with the response when it is a success. When the session ended (the console
 * redirects to its log-in), and, with `reloadWhenGone`, when what is followed is gone (404: the campaign
 * deleted, the import forgotten by a restarted server), it reloads the page, which says what to do next, and
 * rejects with Error("reloading"); any other failure rejects with Error("HTTP <status>") (a caller tries again
 * later; a "reloading" rejection needs nothing more).
 */
(function () {
  "use strict";

  window.needlecastGet = function (url, accept, reloadWhenGone) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: accept } }).then(
      function (response) {
        if (response.redirected || (reloadWhenGone && response.status === 404)) {
          window.location.reload();
          throw new Error("reloading");
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response;
      }
    );
  };
})();
