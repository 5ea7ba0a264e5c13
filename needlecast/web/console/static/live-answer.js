/* One way for the console's builders to ask the server about a form as it changes, shared by the segment,
 * journey and email builders (served from the console itself: the Content-Security-Policy allows no inline
 * script).
 *
 * window.needlecastLiveAnswer({url, body, delay, answered, failed, waiting}) returns {now, soon}:
 * - now() posts body() (a FormData: the form, with its CSRF token) to url, same-origin, and hands the JSON
 *   answer to answered(answer), or calls failed() when the request fails or the server answers an error;
 * - soon() waits until there has been no change for `delay` ms, then calls now(); waiting() is called at once
 *   (the page says it is waiting);
 * - only the newest request is answered: an answer to a request made before a later now() or soon() call no
 *   longer describes the form as it is, so it is dropped when it comes (neither answered nor failed).
 */
(function () {
  "use strict";

  window.needlecastLiveAnswer = function (options) {
    var latest = 0;
    var timer = null;

    function now() {
      latest += 1;
      var mine = latest;
      fetch(options.url, { method: "POST", body: options.body(), credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("status " + response.status);
          }
          return response.json();
        })
        .then(
          function (answer) {
            if (mine === latest) {
              options.answered(answer, function () {
                return mine === latest;
              });
            }
          },
          function () {
            if (mine === latest) {
              options.failed();
            }
          }
        );
    }

    function soon() {
      latest += 1; // an answer to a request made before this change is stale: dropped when it comes
      window.clearTimeout(timer);
      if (options.waiting) {
        options.waiting();
      }
      timer = window.setTimeout(function () {
        timer = null;
        now();
      }, options.delay);
    }

    return { now: now, soon: soon };
  };
})();
