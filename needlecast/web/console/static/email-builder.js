/* The email builder: the preview follows the blocks as they are typed, and the screen width at once.
 *
 * The form (#email-builder) works without this script: its Preview button posts it and the page comes back
 * with the preview; adding, moving and removing a block post it too. Here, a change to any field posts the
 * same form (the session's CSRF token is in it, the chosen image files left out) to the builder's preview
 * address (data-preview) at most once per 400 ms of quiet typing, and puts the answer in place: the subject,
 * the preview line, the HTML in the sandboxed frame (srcdoc: no script runs in it) and the plain-text part.
 * An answer that arrives after a newer request was made is dropped (static/live-answer.js, loaded before this script). data-state on #preview is "loading"
 * while a request runs and "shown" when what is shown (the frame loaded) is the blocks' current state (what
 * a browser test waits on). Choosing an image file posts the form at once (the image is stored, and the page comes back
 * showing it). Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var form = document.getElementById("email-builder");
  if (!form) {
    return;
  }
  var box = document.getElementById("preview");
  var frame = document.getElementById("preview-frame");
  var width = document.getElementById("width");
  var previewButton = document.getElementById("preview-button");
  var url = form.getAttribute("data-preview");

  function show(id, text) {
    var element = document.getElementById(id);
    element.textContent = text || "";
    element.hidden = !text;
  }

  function put(answer) {
    show("preview-problem", answer.problem);
    show("preview-left-out", answer.left_out && answer.left_out.length ? "Not shown until finished: " + answer.left_out.join(", ") + "." : "");
    document.getElementById("preview-subject").textContent = answer.subject || "";
    document.getElementById("preview-preheader").textContent = answer.preheader || "";
    document.getElementById("preview-text").textContent = answer.text || "";
    frame.srcdoc = answer.html || "";
  }

  function formWithoutFiles() {
    var body = new FormData(form);
    var files = [];
    body.forEach(function (value, key) {
      if (typeof value !== "string") {
        files.push(key);
      }
    });
    files.forEach(function (key) {
      body.delete(key);
    });
    body.set("do", "preview");
    box.setAttribute("data-state", "loading");
    return body;
  }

  var later = window.needlecastLiveAnswer({
    url: url,
    delay: 400,
    body: formWithoutFiles,
    waiting: function () {
      box.setAttribute("data-state", "loading");
    },
    answered: function (answer, stillNewest) {
      frame.addEventListener(
        "load",
        function () {
          if (stillNewest()) {
            box.setAttribute("data-state", "shown");
          }
        },
        { once: true }
      );
      put(answer); // the frame loads what it is given: shown once it has
    },
    failed: function () {
      show("preview-problem", "The preview could not be updated. Press Preview to try again.");
      box.setAttribute("data-state", "failed");
    },
  }).soon;

  function fitWidth() {
    frame.classList.toggle("phone", width.value === "phone");
    frame.classList.toggle("desktop", width.value !== "phone");
  }

  form.addEventListener("input", function (event) {
    var target = event.target;
    if (target === width || target.id === "add_kind" || target.type === "file") {
      return;
    }
    later();
  });
  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target === width) {
      fitWidth();
    } else if (target.type === "file" && target.files && target.files.length) {
      form.requestSubmit(previewButton);
    } else if (target.tagName === "SELECT" && target.id !== "add_kind") {
      later();
    } else if (target.type === "checkbox") {
      later();
    }
  });
  fitWidth();
})();
