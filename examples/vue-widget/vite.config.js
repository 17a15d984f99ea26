import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// Two outputs: dist/tailor-widget.js (one self-contained script to drop into any page, Vue and
// urql bundled in) and dist/index.html (a host page that shows how).
export default defineConfig({
  plugins: [vue()],
  base: "./",
  server: { port: 5174 },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    rolldownOptions: {
      input: { "tailor-widget": "src/main.js", index: "index.html" },
      output: { entryFileNames: "[name].js", assetFileNames: "[name][extname]" },
    },
  },
});
