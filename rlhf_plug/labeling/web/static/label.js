// rlhf-plug label: put the answer cards in order by typing, dragging, or arrow keys.
// Plain JavaScript, no framework, nothing fetched. The typed box "order" is what the
// form sends; the server checks it (this file only keeps the cards and the box in step).
(function () {
  "use strict";
  var list = document.getElementById("cards");
  var input = document.getElementById("order");
  var hint = document.getElementById("order-hint");
  if (!list || !input) { return; }

  function cards() { return Array.prototype.slice.call(list.querySelectorAll(".card")); }
  function number(card) { return Number(card.getAttribute("data-n")); }

  // Show "#1", "#2", ... on the first `ranked` cards and "–" on the others.
  function renumber(ranked) {
    cards().forEach(function (card, i) {
      card.querySelector(".rank").textContent = i < ranked ? "#" + (i + 1) : "–";
      card.classList.toggle("ranked", i < ranked);
    });
  }

  // The cards' order becomes the ranking (after a drag or an arrow key).
  function commit() {
    input.value = cards().map(number).join(" ");
    hint.textContent = "";
    renumber(cards().length);
  }

  // The typed numbers put their cards first, in that order; the others keep theirs.
  function applyTyped() {
    var k = cards().length, seen = [], chars = input.value.replace(/[\s,;>]+/g, "").split("");
    for (var i = 0; i < chars.length; i++) {
      var n = Number(chars[i]);
      if (!/[0-9]/.test(chars[i]) || n < 1 || n > k) { hint.textContent = "\u201c" + chars[i] + "\u201d is not an answer number (1-" + k + ")"; return; }
      if (seen.indexOf(n) >= 0) { hint.textContent = n + " appears twice"; return; }
      seen.push(n);
    }
    hint.textContent = seen.length && seen.length < k ? (k - seen.length) + " more to place" : "";
    var byNumber = {};
    cards().forEach(function (card) { byNumber[number(card)] = card; });
    seen.forEach(function (n) { list.appendChild(byNumber[n]); });
    cards().filter(function (card) { return seen.indexOf(number(card)) < 0; })
      .sort(function (a, b) { return number(a) - number(b); })
      .forEach(function (card) { list.appendChild(card); });
    renumber(seen.length);
  }
  input.addEventListener("input", applyTyped);

  // Arrow keys on a focused card bar move that card.
  list.addEventListener("keydown", function (event) {
    var head = event.target.closest(".card-head");
    if (!head || event.target !== head) { return; }
    var card = head.parentNode;
    if (event.key === "ArrowUp" && card.previousElementSibling) {
      list.insertBefore(card, card.previousElementSibling);
    } else if (event.key === "ArrowDown" && card.nextElementSibling) {
      list.insertBefore(card.nextElementSibling, card);
    } else { return; }
    event.preventDefault();
    commit();
    head.focus();
    head.scrollIntoView({ block: "nearest" });
  });

  // Drag a card by its bar (pointer events: mouse, pen and touch alike).
  var dragged = null;
  list.addEventListener("pointerdown", function (event) {
    var head = event.target.closest(".card-head");
    if (!head || event.button !== 0 || event.target.closest(".flags")) { return; }
    dragged = head.parentNode;
    dragged.classList.add("dragging");
    head.setPointerCapture(event.pointerId);
    event.preventDefault();
    head.focus();
  });
  list.addEventListener("pointermove", function (event) {
    if (!dragged) { return; }
    var before = cards().filter(function (card) {
      if (card === dragged) { return false; }
      var box = card.getBoundingClientRect();
      return event.clientY < box.top + box.height / 2;
    })[0];
    if (before !== dragged.nextElementSibling) { list.insertBefore(dragged, before || null); }
  });
  function drop() {
    if (!dragged) { return; }
    dragged.classList.remove("dragging");
    dragged = null;
    commit();
  }
  list.addEventListener("pointerup", drop);
  list.addEventListener("pointercancel", drop);

  // A second click on a chosen rating clears it (ratings are optional).
  list.addEventListener("click", function (event) {
    var radio = event.target;
    if (radio.type !== "radio") { return; }
    if (radio.getAttribute("data-was") === "on") { radio.checked = false; }
    list.querySelectorAll('input[name="' + radio.name + '"]').forEach(function (r) {
      r.setAttribute("data-was", r.checked ? "on" : "off");
    });
  });
  list.querySelectorAll("input[type=radio]:checked").forEach(function (r) { r.setAttribute("data-was", "on"); });

  if (input.value) { applyTyped(); }
}());
