// Progressive enhancement of the export button: start the export through the JSON
// API and follow its status without reloading. Without JavaScript the form posts
// to /export/start and the page shows the status after a redirect.
"use strict";

function showStatus(element, job) {
  element.textContent = `Export ${job.status.replace("_", " ")}` +
    (job.rows !== null && job.rows !== undefined ? `: ${job.rows} rows.` : ".");
  if (job.error) {  // failed: say why (polling stops on "failed")
    const reason = document.createElement("span");
    reason.id = "export-error";
    reason.textContent = job.error.charAt(0).toUpperCase() + job.error.slice(1) + ".";
    element.append(" ", reason);
  }
  if (job.download_url) {
    const link = document.createElement("a");
    link.id = "download-link";
    link.href = job.download_url;
    link.textContent = "Download";
    element.append(" ", link);
  }
}

async function follow(element, statusUrl) {
  for (;;) {
    const response = await fetch(statusUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      element.textContent = "Export status unavailable.";
      return;
    }
    const job = await response.json();
    showStatus(element, job);
    if (job.status === "complete" || job.status === "failed") return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("export-form");
  const status = document.getElementById("export-status");
  if (status.dataset.statusUrl) follow(status, status.dataset.statusUrl);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "Starting export…";
    const response = await fetch("/export", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ format: form.elements.format.value }),
    });
    if (response.status !== 202) {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || "The export could not start.";
      return;
    }
    const job = await response.json();
    follow(status, job.status_url);
  });
});
