import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `base: "./"`: the built site works from any path (the browser tests serve dist/ as it is).
export default defineConfig({
  plugins: [react()],
  base: "./",
  server: { port: 5173 },
  build: { chunkSizeWarningLimit: 1024 },
});
