import { defineConfig, type Plugin } from 'vite';

// Content-Security-Policy for the built page: everything from our own origin,
// nothing from anywhere else (no CDN, no fonts, no analytics). The dev server
// is left without it because Vite injects inline styles there.
const csp = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob: mediastream:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

function cspPlugin(): Plugin {
  return {
    name: 'amphi-csp',
    apply: 'build',
    transformIndexHtml(html) {
      return html.replace(
        '<meta charset="utf-8" />',
        `<meta charset="utf-8" />\n    <meta http-equiv="Content-Security-Policy" content="${csp}" />`,
      );
    },
  };
}

export default defineConfig({
  // Absolute asset URLs: the same index.html is served at / and /room/<ROOM>.
  base: '/',
  plugins: [cspPlugin()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    // No inlined data: URLs for assets, so the CSP above stays simple.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev` against a local `amphi serve --dev` on port 7880 (scripts/dev).
    proxy: {
      '/api': 'http://127.0.0.1:7880',
      '/rtc': { target: 'ws://127.0.0.1:7880', ws: true },
    },
  },
});
