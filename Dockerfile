# The registry gateway. With COUCHDB_URL set it uses that CouchDB (see docker-compose.yml).
# Built in one stage (TypeScript, esbuild, the design documents), run from another that holds only
# the production dependencies and the built registry: no tests, no benchmarks, no build tools.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY config ./config
COPY core ./core
COPY couchapp ./couchapp
COPY couchdb ./couchdb
COPY lib ./lib
COPY replication ./replication
COPY gateway ./gateway
COPY server ./server
# tsconfig.json also names test/ and bench/, which are not copied: the build leaves them out.
RUN npx tsc -p tsconfig.json && node dist/couchapp/build.js

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/config ./dist/config
COPY --from=build /app/dist/core ./dist/core
COPY --from=build /app/dist/couchapp ./dist/couchapp
COPY --from=build /app/dist/couchdb ./dist/couchdb
COPY --from=build /app/dist/lib ./dist/lib
COPY --from=build /app/dist/replication ./dist/replication
COPY --from=build /app/dist/gateway ./dist/gateway
COPY --from=build /app/dist/server ./dist/server
# The tarball cache (and, without COUCHDB_URL, the embedded database, its admin password and the
# signing key) live in DATA_DIR: a volume, so that they outlive the container.
RUN mkdir -p /app/data && chown node:node /app/data
ENV HOST=0.0.0.0 PORT=5080 DATA_DIR=/app/data
VOLUME /app/data
# One port: npm, the pages, and for server admins Fauxton and CouchDB's API under /-/couchdb/ (the
# embedded CouchDB listens on 127.0.0.1 inside the container only).
EXPOSE 5080
USER node
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:5080/-/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server/main.js"]
