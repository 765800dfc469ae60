// Vigil console: the dark-mode toggle and the live journal (Server-Sent Events). Everything else is
// plain HTML forms and links, so the console works without this file too.
(function () {
  "use strict";
  var root = document.documentElement;
  try { var saved = localStorage.getItem("vigil-theme"); if (saved) root.setAttribute("data-theme", saved); } catch (e) {}

  function isDark() {
    var t = root.getAttribute("data-theme");
    if (t) return t === "dark";
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function text(tag, cls, s) { var el = document.createElement(tag); if (cls) el.className = cls; el.textContent = s; return el; }

  function hms(iso) { var d = new Date(iso); return isNaN(d) ? "" : d.toISOString().slice(11, 19); }

  document.addEventListener("DOMContentLoaded", function () {
    var btn = document.querySelector("[data-theme-toggle]");
    if (btn) {
      var sync = function () { btn.setAttribute("aria-pressed", String(isDark())); btn.textContent = isDark() ? "Light mode" : "Dark mode"; };
      sync();
      btn.addEventListener("click", function () {
        var next = isDark() ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("vigil-theme", next); } catch (e) {}
        sync();
      });
    }

    var list = document.getElementById("journal");
    if (!list || !list.dataset.events || !window.EventSource) return;
    var status = document.getElementById("inv-status");
    var findings = document.getElementById("findings");
    var refreshing = false, again = false;

    function refresh() {              // re-render the root cause, alternatives and evidence
      if (!findings || !findings.dataset.panel) return;
      if (refreshing) { again = true; return; }
      refreshing = true;
      fetch(findings.dataset.panel, { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html !== null) {
          var active = document.activeElement && findings.contains(document.activeElement);
          findings.innerHTML = html;
          if (active) findings.focus && findings.focus();
        }
      }).finally(function () { refreshing = false; if (again) { again = false; refresh(); } });
    }

    var es = new EventSource(list.dataset.events);
    es.addEventListener("journal", function (ev) {
      var j = JSON.parse(ev.data);
      if (list.querySelector('[data-seq="' + j.seq + '"]')) return;
      var li = document.createElement("li");
      li.className = "j-" + j.kind; li.dataset.seq = j.seq;
      li.appendChild(text("span", "jt", hms(j.ts))); li.appendChild(document.createTextNode(" "));
      li.appendChild(text("span", "jk", j.kind)); li.appendChild(document.createTextNode(" "));
      li.appendChild(text("span", "jm", j.message));
      if (j.rows !== null && j.rows !== undefined && j.message.indexOf(String(j.rows)) < 0) { li.appendChild(document.createTextNode(" ")); li.appendChild(text("span", "mut", "(" + j.rows + " rows)")); }
      list.appendChild(li);
      var box = list.closest(".journal"); if (box) box.scrollTop = box.scrollHeight;
    });
    es.addEventListener("hypotheses", refresh);
    es.addEventListener("status", function (ev) {
      var s = JSON.parse(ev.data).status;
      if (status) { status.textContent = s; status.className = "badge st-" + s; }
    });
    es.addEventListener("end", function (ev) {
      es.close();
      var s = JSON.parse(ev.data).status;
      if (status) { status.textContent = s; status.className = "badge st-" + s; status.dataset.final = "1"; }
      var cancel = document.querySelector('form[action$="/cancel"]'); if (cancel) cancel.remove();
      var note = document.querySelector(".live-note"); if (note) note.textContent = "The investigation has ended (" + s + ").";
      refresh();
    });
  });
})();
