// Load the local htmx copy when the CDN one did not arrive (offline, tests, blocked CDN).
// document.write keeps it synchronous, so htmx is there before the page's own scripts run.
if (!window.htmx) {
  var here = document.currentScript.src;
  document.write('<script src="' + here.replace(/htmx-fallback\.js.*$/, "htmx.min.js") + '"><\/script>');
}
