# The registry gateway. With COUCHDB_URL set it uses that CouchDB (see docker-compose.yml).
FROM node:20-bookworm-slim
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
COPY test ./test
COPY bench ./bench
RUN npm run build && npm prune --omit=dev
ENV HOST=0.0.0.0 PORT=5080 NODE_ENV=production
EXPOSE 5080
USER node
CMD ["node", "dist/server/main.js"]
