// Copy buttons: <button data-copy="#element-id">. Delegated, so swapped-in fragments work.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.querySelector(button.getAttribute("data-copy"));
  if (!source) return;
  var text = (source.value !== undefined ? source.value : source.textContent).trim();
  var done = function () {
    var label = button.textContent;
    button.textContent = "Copied";
    button.setAttribute("aria-live", "polite");
    setTimeout(function () { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
  } else {
    selectText(source);
  }
});

function selectText(node) {
  var range = document.createRange();
  range.selectNodeContents(node);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// Confirm dialogs and focus: after a swap, focus the first field of a swapped-in form.
document.addEventListener("htmx:afterSwap", function (event) {
  var field = event.detail.target && event.detail.target.querySelector &&
    event.detail.target.querySelector("form input:not([type=hidden])");
  if (field && event.detail.target.hasAttribute("data-autofocus")) field.focus();
});
