/* The journey builder: its steps as rows that can be added, removed and moved up and down, each showing only
 * the fields of what it does (send, wait, wait until, branch, split, go to, leave), without a reload.
 *
 * The form (#journey-builder) works without this script: every row shows every kind's fields, two spare empty
 * rows take new steps, and the server reads only the fields of each row's kind. Here the spare rows are taken
 * away ("Add a step" adds one), each row gets "Move up", "Move down" and "Remove this step", and the fields
 * are renumbered after every change (n-0-..., n-1-...: the server reads the rows in that order, the first is
 * where people start). The step names typed so far are offered wherever a row names another step.
 * As the rows change, the form is posted (the session's CSRF token is in it) to the builder's check address
 * (data-check) at most once per 500 ms of quiet typing; the loader's answer shows in #live-check (role=status):
 * "Looks right", or the first mistake with the step and the field it is about. An answer to an older request
 * is dropped (static/live-answer.js, loaded before this script). data-state on the form is "ready" once the script has set the rows up, "checking" while a check
 * is due or running and "checked" when the shown answer is the rows' current one (what a browser test waits on).
 * Served from the console itself: the Content-Security-Policy allows no inline script.
 */
(function () {
  "use strict";
  var form = document.getElementById("journey-builder");
  var rows = document.getElementById("rows");
  if (!form || !rows) {
    return;
  }
  var template = document.getElementById("row-template");
  var addButton = document.getElementById("add-row");
  var ids = document.getElementById("node-ids");
  var ATTRIBUTES = ["id", "name", "for", "aria-describedby"];

  function allRows() {
    return rows.querySelectorAll("[data-row]");
  }

  function rename(element, pattern, replacement) {
    for (var a = 0; a < ATTRIBUTES.length; a += 1) {
      var value = element.getAttribute(ATTRIBUTES[a]);
      if (value && pattern.test(value)) {
        element.setAttribute(ATTRIBUTES[a], value.replace(pattern, replacement));
      }
    }
  }

  function showFor(container, attribute, value) {
    var parts = container.querySelectorAll("[" + attribute + "]");
    for (var i = 0; i < parts.length; i += 1) {
      parts[i].hidden = parts[i].getAttribute(attribute).split(" ").indexOf(value) < 0;
    }
  }

  function fitRow(row) {
    var kind = row.querySelector("[data-part=kind]").value || "send";
    showFor(row, "data-for", kind);
    fitConditions(row);
    var waitMode = row.querySelector("[data-part=wait_mode]");
    var untilMode = row.querySelector("[data-part=wu_mode]");
    var modes = row.querySelectorAll("[data-mode]");
    for (var i = 0; i < modes.length; i += 1) {
      var mode = modes[i].getAttribute("data-mode");
      var inWait = modes[i].closest("[data-for]").getAttribute("data-for") === "wait";
      modes[i].hidden = mode !== (inWait ? waitMode.value : untilMode.value);
    }
  }

  // What each kind of condition asks for: the labels of its name and value boxes ("" hides the box).
  var CONDITION_BOXES = {
    "": ["", ""],
    equals: ["Field", "Value"],
    exists: ["Field", ""],
    concern: ["", "Concern (e.g. acne)"],
    tag: ["", "Tag"],
    consent: ["", ""],
    event: ["Event (e.g. no_show)", "Within (optional, e.g. 180d)"],
    opened: ["Step (its email)", ""],
    clicked: ["Step (its email)", "Link (optional, e.g. /book)"]
  };

  function fitCondition(cond) {
    var boxes = CONDITION_BOXES[cond.querySelector("[data-part=cond-type]").value] || ["Name", "Value"];
    var parts = ["name", "value"];
    for (var i = 0; i < parts.length; i += 1) {
      var box = cond.querySelector("[data-cond-part=" + parts[i] + "]");
      box.hidden = !boxes[i];
      if (boxes[i]) {
        box.querySelector("label").textContent = boxes[i];
      }
    }
  }

  function fitConditions(container) {
    var all = container.querySelectorAll("[data-cond]");
    for (var i = 0; i < all.length; i += 1) {
      fitCondition(all[i]);
    }
  }

  function renumberPaths(row) {
    var paths = row.querySelectorAll("[data-path]");
    for (var j = 0; j < paths.length; j += 1) {
      paths[j].querySelector("legend").textContent = "Path " + (j + 1);
      var named = paths[j].querySelectorAll("*");
      for (var k = 0; k < named.length; k += 1) {
        rename(named[k], /-p-\d+-/, "-p-" + j + "-");
      }
    }
  }

  function renumber() {
    var all = allRows();
    for (var i = 0; i < all.length; i += 1) {
      var row = all[i];
      row.querySelector("legend").textContent = "Step " + (i + 1);
      var named = row.querySelectorAll("*");
      for (var k = 0; k < named.length; k += 1) {
        rename(named[k], /n-\d+(?=-|$)/, "n-" + i);
      }
      var name = row.querySelector("[data-part=id]").value || "step " + (i + 1);
      var tools = row.querySelectorAll("[data-tool]");
      for (var t = 0; t < tools.length; t += 1) {
        var tool = tools[t].getAttribute("data-tool");
        tools[t].setAttribute("aria-label", tools[t].textContent + ": " + name);
        tools[t].disabled = (tool === "up" && i === 0) || (tool === "down" && i === all.length - 1);
      }
    }
    offerIds();
  }

  function offerIds() {
    var names = [];
    var all = allRows();
    for (var i = 0; i < all.length; i += 1) {
      var value = all[i].querySelector("[data-part=id]").value.trim();
      if (value && names.indexOf(value) < 0) {
        names.push(value);
      }
    }
    ids.textContent = "";
    for (var n = 0; n < names.length; n += 1) {
      var option = document.createElement("option");
      option.value = names[n];
      ids.appendChild(option);
    }
  }

  function tool(row, name, label, act) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.setAttribute("data-tool", name);
    button.textContent = label;
    button.addEventListener("click", function () {
      act();
      renumber();
      var again = row.querySelector("[data-tool=" + name + "]");
      if (row.parentNode && again && !again.disabled) {
        again.focus();
      } else if (row.parentNode) {
        row.querySelector("[data-part=id]").focus();
      }
    });
    row.querySelector("[data-tools]").appendChild(button);
  }

  function addPathButton(row) {
    var box = row.querySelector("[data-paths]");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Add a path";
    button.setAttribute("data-add-path", "");
    button.addEventListener("click", function () {
      var paths = box.querySelectorAll("[data-path]");
      var copy = paths[paths.length - 1].cloneNode(true);
      var fields = copy.querySelectorAll("input, select");
      for (var i = 0; i < fields.length; i += 1) {
        fields[i].value = "";
        fields[i].removeAttribute("aria-invalid");
      }
      var errors = copy.querySelectorAll(".error");
      for (var e = 0; e < errors.length; e += 1) {
        errors[e].parentNode.removeChild(errors[e]);
      }
      box.appendChild(copy);
      fitConditions(copy);
      renumberPaths(row);
      renumber();
      copy.querySelector("input, select").focus();
    });
    box.parentNode.insertBefore(button, box.nextSibling);
  }

  function equip(row) {
    fitRow(row);
    tool(row, "up", "Move up", function () {
      var before = row.previousElementSibling;
      if (before) {
        rows.insertBefore(row, before);
      }
    });
    tool(row, "down", "Move down", function () {
      var after = row.nextElementSibling;
      if (after) {
        rows.insertBefore(after, row);
      }
    });
    tool(row, "remove", "Remove this step", function () {
      rows.removeChild(row);
      if (!allRows().length) {
        addRow();
      }
    });
    addPathButton(row);
  }

  function addRow() {
    var row = template.content.firstElementChild.cloneNode(true);
    rows.appendChild(row);
    equip(row);
    renumber();
    return row;
  }

  var existing = allRows();
  for (var i = 0; i < existing.length; i += 1) {
    var spare = !existing[i].querySelector("[data-part=kind]").value && !existing[i].querySelector("[data-part=id]").value;
    if (spare && existing.length > 1) {
      rows.removeChild(existing[i]);
    } else {
      equip(existing[i]);
    }
  }
  if (!allRows().length) {
    addRow();
  }
  renumber();
  addButton.hidden = false;
  addButton.addEventListener("click", function () {
    addRow().querySelector("[data-part=id]").focus();
  });
  rows.addEventListener("change", function (event) {
    var row = event.target.closest("[data-row]");
    var part = event.target.getAttribute("data-part");
    if (row && (part === "kind" || part === "wait_mode" || part === "wu_mode")) {
      fitRow(row);
    }
    if (part === "cond-type") {
      fitCondition(event.target.closest("[data-cond]"));
    }
  });
  rows.addEventListener("input", function (event) {
    if (event.target.getAttribute("data-part") === "id") {
      renumber();
    }
  });

  // Who starts it: only the fields of the chosen way in, and the re-entry's days only when asked.
  var entry = document.getElementById("entry_kind");
  var reentry = document.getElementById("reentry");
  function fitEntry() {
    showFor(form, "data-entry", entry.value);
    showFor(form, "data-reentry", reentry.value);
  }
  var entryDate = form.querySelector("[data-entry=date]");
  if (entryDate) {
    fitConditions(entryDate);
    entryDate.addEventListener("change", function (event) {
      if (event.target.getAttribute("data-part") === "cond-type") {
        fitCondition(event.target.closest("[data-cond]"));
      }
    });
  }
  if (entry && reentry) {
    entry.addEventListener("change", fitEntry);
    reentry.addEventListener("change", fitEntry);
    fitEntry();
  }
  form.setAttribute("data-state", "ready");

  // The loader's answer as the rows change (nothing is written).
  var checkUrl = form.getAttribute("data-check");
  var checkBox = document.getElementById("check-box");
  var live = document.getElementById("live-check");

  function where(field) {
    var element = field ? document.getElementById(field) : null;
    if (!element) {
      var row = field && /^n-\d+$/.test(field) ? rows.querySelectorAll("[data-row]")[Number(field.slice(2))] : null;
      return row ? row.querySelector("legend").textContent + ": " : "";
    }
    var label = document.querySelector("label[for='" + field + "']");
    var inRow = element.closest("[data-row]");
    var step = inRow ? inRow.querySelector("legend").textContent + ", " : "";
    return step + (label ? label.textContent.replace(/\s*\(.*\)\s*$/, "") + ": " : "");
  }

  var soon = window.needlecastLiveAnswer({
    url: checkUrl,
    delay: 500,
    body: function () {
      return new FormData(form);
    },
    waiting: function () {
      form.setAttribute("data-state", "checking");
    },
    answered: function (answer) {
      live.textContent = answer.ok ? answer.said : where(answer.field) + answer.said;
      checkBox.className = "count-box" + (answer.ok ? "" : " bad");
      checkBox.hidden = false;
      form.setAttribute("data-state", "checked");
    },
    failed: function () {
      live.textContent = "The journey could not be checked just now; saving checks it too.";
      checkBox.hidden = false;
      form.setAttribute("data-state", "checked");
    },
  }).soon;

  if (checkUrl && live) {
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
    form.addEventListener("click", function (event) {
      if (event.target.closest("[data-tool], [data-add-path]") || event.target.id === "add-row") {
        soon();
      }
    });
  }
})();
