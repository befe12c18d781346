// Type-ahead for the marketplace search box: asks /marketplace/suggest as you type.
(function () {
  "use strict";
  var input = document.getElementById("q");
  var list = document.getElementById("suggestions");
  if (!input || !list) { return; }
  var timer = null, active = -1, seq = 0;
  function close() { list.hidden = true; list.textContent = ""; active = -1; }
  function show(items) {
    list.textContent = "";
    items.forEach(function (s, i) {
      var li = document.createElement("li");
      li.setAttribute("role", "option");
      li.dataset.url = s.url;
      var name = document.createElement("strong");
      name.textContent = s.name;            // text, never HTML
      var desc = document.createElement("span");
      desc.className = "muted";
      desc.textContent = s.description;
      li.appendChild(name); li.appendChild(desc);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); window.location = s.url; });
      list.appendChild(li);
    });
    list.hidden = items.length === 0;
    active = -1;
  }
  function fetchSuggestions() {
    var q = input.value.trim();
    if (!q) { close(); return; }
    var mine = ++seq;
    fetch(input.dataset.suggest + "?q=" + encodeURIComponent(q), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : {suggestions: []}; })
      .then(function (data) { if (mine === seq) { show(data.suggestions || []); } })
      .catch(close);
  }
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(fetchSuggestions, 120); });
  input.addEventListener("keydown", function (e) {
    var items = list.querySelectorAll("li");
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!items.length) { return; }
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items.forEach(function (li, i) { li.setAttribute("aria-selected", i === active ? "true" : "false"); });
    } else if (e.key === "Enter" && active >= 0 && items[active]) {
      e.preventDefault();
      window.location = items[active].dataset.url;
    } else if (e.key === "Escape") { close(); }
  });
  input.addEventListener("blur", function () { setTimeout(close, 150); });
})();
