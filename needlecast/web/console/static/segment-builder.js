/* The segment builder: its size counted as the rows change, rows added and removed, without a reload.
 *
 * The form (#segment-builder) works without this script: its Count button posts it and the page comes back
 * with the size. Here, a change to any row posts the same form (the session's CSRF token is in it) to the
 * builder's count address (data-count) at most once per 400 ms of quiet typing, and shows the answer in
 * #live-count (role=status: read out when it changes). An answer that arrives after a newer request was made
 * (or before a newer change) is dropped (static/live-answer.js, loaded before this script). data-state on the form is "counting" while a request runs and "counted" when the shown count
 * is the rows' current one (what a browser test waits on). The "name" box shows only for rows that need it,
 * and choosing what a row is about chooses the condition that kind of row takes. The page's spare empty rows
 * (for a browser without this script) are taken away: "Add a condition" adds one.
 * Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var form = document.getElementById("segment-builder");
  if (!form) {
    return;
  }
  var rows = document.getElementById("rows");
  var live = document.getElementById("live-count");
  var template = document.getElementById("row-template");
  var addButton = document.getElementById("add-row");
  var countUrl = form.getAttribute("data-count");
  var NAMED = { event: true, attribute: true };
  // The condition each kind of row takes (an attribute row keeps whatever was chosen).
  var FITTING = { concern: "in", tag: "in", list: "in", consent: "equals", signed_up: "within_days", event: "within_days" };

  function fitRow(row) {
    var field = row.querySelector("[data-part=field]");
    var box = row.querySelector("[data-part=name-box]");
    box.hidden = !NAMED[field.value];
  }

  function renumber() {
    var all = rows.querySelectorAll("[data-row]");
    for (var i = 0; i < all.length; i += 1) {
      all[i].querySelector("legend").textContent = "Condition " + (i + 1);
      var parts = all[i].querySelectorAll("[data-part=field],[data-part=name],[data-part=op],[data-part=value]");
      for (var j = 0; j < parts.length; j += 1) {
        var kind = parts[j].getAttribute("data-part");
        parts[j].name = kind + "-" + i;
        parts[j].id = kind + "-" + i;
        parts[j].parentNode.querySelector("label").htmlFor = kind + "-" + i;
      }
    }
  }

  function say(text, strong) {
    live.textContent = "";
    if (strong) {
      var b = document.createElement("strong");
      b.textContent = strong;
      live.appendChild(b);
    }
    live.appendChild(document.createTextNode(text));
  }

  var asking = window.needlecastLiveAnswer({
    url: countUrl,
    delay: 400,
    body: function () {
      form.setAttribute("data-state", "counting");
      return new FormData(form);
    },
    waiting: function () {
      form.setAttribute("data-state", "waiting");
    },
    answered: function (answer) {
      var problems = Object.keys(answer.problems || {});
      if (problems.length) {
        var first = answer.problems[problems[0]];
        var where = problems[0] === "name" ? "" : "Condition " + (Number(problems[0]) + 1) + ": ";
        say(" " + first, where);
      } else {
        var left = Object.keys(answer.excluded || {}).map(function (k) {
          return answer.excluded[k].toLocaleString("en") + " left out: " + k;
        });
        say(" would be in this segment now" + (left.length ? " (" + left.join("; ") + ")." : "."), answer.text);
      }
      form.setAttribute("data-state", "counted");
    },
    failed: function () {
      say("The count could not be made just now; press Count to try again.", "");
      form.setAttribute("data-state", "counted");
    },
  });
  var count = asking.now;
  var soon = asking.soon;

  function addRemove(row) {
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary remove-row";
    remove.textContent = "Remove this condition";
    remove.addEventListener("click", function () {
      row.parentNode.removeChild(row);
      renumber();
      soon();
    });
    row.appendChild(remove);
  }

  function addRow() {
    var row = template.content.firstElementChild.cloneNode(true);
    rows.appendChild(row);
    fitRow(row);
    addRemove(row);
    renumber();
    return row;
  }

  // The page's spare empty rows are for a browser without this script; here "Add a condition" makes rows.
  var existing = rows.querySelectorAll("[data-row]");
  for (var i = 0; i < existing.length; i += 1) {
    if (!existing[i].querySelector("[data-part=field]").value) {
      rows.removeChild(existing[i]);
    } else {
      fitRow(existing[i]);
      addRemove(existing[i]);
    }
  }
  if (!rows.querySelector("[data-row]")) {
    addRow();
  }
  renumber();
  addButton.hidden = false;
  addButton.addEventListener("click", function () {
    addRow().querySelector("[data-part=field]").focus();
  });
  if (!live.querySelector("strong")) {
    count(); // a page that came back with a mistake shows no size: count what it shows
  }
  rows.addEventListener("change", function (event) {
    var row = event.target.closest("[data-row]");
    if (row && event.target.getAttribute("data-part") === "field") {
      fitRow(row);
      var fitting = FITTING[event.target.value];
      if (fitting) {
        row.querySelector("[data-part=op]").value = fitting;
      }
    }
    soon();
  });
  rows.addEventListener("input", soon);
})();
