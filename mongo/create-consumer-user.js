// Run once by the mongo image (mongosh, as the root user from .env), on the first start with an
// empty data volume: the consumer's user, allowed readWrite on its own database and nothing else.
// Its name and password come from .env (MONGO_CONSUMER_USERNAME, MONGO_CONSUMER_PASSWORD); the
// user lives in that database, so the consumer's URI says authSource=<MONGO_DB>.
const required = ["MONGO_CONSUMER_USERNAME", "MONGO_CONSUMER_PASSWORD", "MONGO_DB"];
const missing = required.filter((name) => !process.env[name]);
if (missing.length > 0) {
  throw new Error(`create-consumer-user.js: set ${missing.join(", ")} in .env`);
}
const database = db.getSiblingDB(process.env.MONGO_DB);
const user = process.env.MONGO_CONSUMER_USERNAME;
if (database.getUser(user) === null) {
  database.createUser({
    user,
    pwd: process.env.MONGO_CONSUMER_PASSWORD,
    roles: [{ role: "readWrite", db: process.env.MONGO_DB }],
  });
  print(`create-consumer-user.js: created ${user} with readWrite on ${process.env.MONGO_DB}`);
}
