// Builds the softphone into ../static/site (embedded by the Go peer):
//   index.html, embed.html  the page (embed.html = same app, embed mode)
//   app.js, app.css         the bundle (JsSIP included)
//   widget.js               the host-page script (tiny, no dependencies)
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile, readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "site");
const keep = new Set(["index.html", "embed.html", "app.js", "app.css", "widget.js"]);

await mkdir(out, { recursive: true });
for (const f of await readdir(out)) if (!keep.has(f)) await rm(join(out, f), { recursive: true });

const common = {
  bundle: true,
  minify: true,
  target: ["chrome109", "firefox115", "safari16"],
  legalComments: "none",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"', "process.env.DEBUG": "undefined" },
};

await build({
  ...common,
  entryPoints: [join(here, "src", "app", "main.js")],
  outfile: join(out, "app.js"),
  format: "iife",
  platform: "browser",
});
await build({
  ...common,
  entryPoints: [join(here, "src", "app.css")],
  outfile: join(out, "app.css"),
});
await build({
  ...common,
  entryPoints: [join(here, "src", "widget.js")],
  outfile: join(out, "widget.js"),
  format: "iife",
});

const html = await readFile(join(here, "src", "index.html"), "utf8");
await writeFile(join(out, "index.html"), html.replace("__PAGE__", "index"));
await writeFile(join(out, "embed.html"), html.replace("__PAGE__", "embed").replace("<title>p2psip phone</title>", "<title>p2psip call</title>"));
console.log("built", [...keep].join(", "), "into", out);
