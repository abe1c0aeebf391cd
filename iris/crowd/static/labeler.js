// The iris labeler page: hotkeys, progress, zoom, lease countdown. The form works without it.
(function () {
  "use strict";
  var form = document.getElementById("page-form");
  document.querySelectorAll("img").forEach(function (img) {
    function mark() { if (img.naturalWidth && img.naturalWidth < 96) img.classList.add("tiny"); }
    if (img.complete) mark(); else img.addEventListener("load", mark);
  });
  var zoom = document.getElementById("zoom");
  var zoomImg = zoom ? zoom.querySelector("img") : null;
  if (zoomImg) zoomImg.addEventListener("load", function () {
    zoomImg.classList.toggle("tiny", zoomImg.naturalWidth < 96);
  });
  function openZoom(src, caption) {
    if (!zoom) return;
    zoomImg.src = src;
    zoom.querySelector("p").textContent = caption || "";
    zoom.hidden = false;
  }
  function closeZoom() { if (zoom) zoom.hidden = true; }
  if (zoom) zoom.addEventListener("click", closeZoom);
  document.querySelectorAll("button.zoom").forEach(function (b) {
    b.addEventListener("click", function () {
      var card = b.closest("figure.task");
      if (card) setCurrent(cards.indexOf(card), false);
      openZoom(b.querySelector("img").src, b.getAttribute("data-caption"));
    });
  });
  var lease = document.querySelector("[data-expires]");
  if (lease) {
    var end = Date.parse(lease.getAttribute("data-expires"));
    var tick = function () {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      lease.textContent = left ? "page kept for you " + m + ":" + (s < 10 ? "0" : "") + s : "page expired: reload for a new one";
    };
    tick();
    setInterval(tick, 1000);
  }
  if (!form) return;
  var cards = Array.prototype.slice.call(form.querySelectorAll("figure.task"));
  var total = cards.length;
  var bar = document.querySelector(".progress progress");
  var count = document.getElementById("answered");
  var submit = form.querySelector("button[type=submit]");
  var missing = document.getElementById("missing");
  var cur = 0;
  function answered(card) { return !!card.querySelector("input:checked"); }
  function refresh() {
    var n = cards.filter(answered).length;
    cards.forEach(function (c) { c.classList.toggle("answered", answered(c)); });
    if (bar) bar.value = n;
    if (count) count.textContent = n + "/" + total;
    if (missing) {
      missing.textContent = n < total ? (total - n) + " left" : "all answered \u2014 Enter submits";
      missing.classList.toggle("complete", n === total);
    }
    if (submit) submit.disabled = n < total;
  }
  function setCurrent(i, scroll) {
    if (i < 0 || i >= total) return;
    cards[cur].classList.remove("current");
    cur = i;
    cards[cur].classList.add("current");
    if (scroll !== false) cards[cur].scrollIntoView({block: "nearest", behavior: "auto"});
  }
  function nextUnanswered(from) {
    for (var k = 1; k <= total; k++) {
      var j = (from + k) % total;
      if (!answered(cards[j])) return j;
    }
    return -1;
  }
  function answer(value) {
    var input = cards[cur].querySelector("input[value='" + value + "']");
    if (!input) return;
    input.checked = true;
    refresh();
    var j = nextUnanswered(cur);
    if (j >= 0) setCurrent(j); else if (submit) submit.focus();
  }
  form.addEventListener("change", function (e) {
    var card = e.target.closest("figure.task");
    if (card) setCurrent(cards.indexOf(card), false);
    refresh();
  });
  form.addEventListener("submit", function (e) {
    var j = cards.filter(answered).length < total ? nextUnanswered(-1) : -1;
    if (j >= 0) { e.preventDefault(); setCurrent(j); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (zoom && !zoom.hidden) {
      if (e.key === "Escape" || e.key === "z" || e.key === " ") { closeZoom(); e.preventDefault(); }
      return;
    }
    var k = e.key;
    if (k === "1") answer(1);
    else if (k === "2") answer(0);
    else if (k === "ArrowRight" || k === "ArrowDown") setCurrent(Math.min(cur + 1, total - 1));
    else if (k === "ArrowLeft" || k === "ArrowUp") setCurrent(Math.max(cur - 1, 0));
    else if (k === "z" || k === " ") {
      var b = cards[cur].querySelector("button.zoom");
      openZoom(b.querySelector("img").src, b.getAttribute("data-caption"));
    } else if (k === "Enter") { if (submit && !submit.disabled) form.requestSubmit(submit); }
    else return;
    e.preventDefault();
  }, true);
  setCurrent(0, false);
  refresh();
})();
