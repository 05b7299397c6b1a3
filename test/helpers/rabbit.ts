import amqp from 'amqplib';

/** The RabbitMQ the tests use: AMQP_URL, or the machine's broker on the standard port. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export async function connectRabbit(): Promise<amqp.ChannelModel> {
  // Read at call time: a script may start a broker after importing this.
  const connection = await amqp.connect(process.env.AMQP_URL ?? AMQP_URL);
  connection.on('error', () => undefined);
  return connection;
}
