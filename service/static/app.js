// Progressive enhancement of the export button: start the export through the JSON
// API and follow its status without reloading. Without JavaScript the form posts
// to /export/start and the page shows the status after a redirect.
"use strict";

const PENDING = ["queued", "in_progress"];

function showStatus(element, job) {
  const running = job.status === "in_progress" && job.rows_total !== null;
  element.textContent = `Export ${job.status.replace("_", " ")}` + (
    running ? `: ${job.rows_written} of ${job.rows_total} rows.`
      : job.rows !== null && job.rows !== undefined ? `: ${job.rows} rows.` : ".");
  for (const [key, id] of [["notice", "export-notice"], ["error", "export-error"]]) {
    if (!job[key]) continue;  // notice: queued with no worker; error: failed, and why
    const span = document.createElement("span");
    span.id = id;
    span.textContent = job[key].charAt(0).toUpperCase() + job[key].slice(1) + ".";
    element.append(" ", span);
  }
  if (job.download_url) {
    const link = document.createElement("a");
    link.id = "download-link";
    link.href = job.download_url;
    link.textContent = "Download";
    element.append(" ", link);
  }
}

function showProgress(bar, job) {
  // Shown while rows are written, and full once complete; hidden while queued or failed.
  bar.hidden = job.rows_total === null || !["in_progress", "complete"].includes(job.status);
  bar.max = Math.max(job.rows_total || 0, 1);  // an export of no todos is complete at once
  bar.value = job.status === "complete" ? bar.max : job.rows_written;
}

async function follow(element, statusUrl) {
  const button = document.getElementById("export-button");
  const bar = document.getElementById("export-progress");
  button.disabled = true;  // one export at a time (after a reload the server renders it)
  for (;;) {
    const response = await fetch(statusUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      element.textContent = "Export status unavailable.";
      break;
    }
    const job = await response.json();
    showStatus(element, job);
    showProgress(bar, job);
    if (!PENDING.includes(job.status)) break;  // complete or failed: stop polling
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  button.disabled = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("export-form");
  const status = document.getElementById("export-status");
  // The export in the address, or this client's pending one (rendered by the server).
  if (status.dataset.statusUrl) follow(status, status.dataset.statusUrl);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("export-button");
    button.disabled = true;
    status.textContent = "Starting export…";
    const response = await fetch("/export", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ format: form.elements.format.value }),
    });
    if (response.status !== 202) {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || "The export could not start.";
      button.disabled = false;
      return;
    }
    const job = await response.json();
    follow(status, job.status_url);
  });
});
