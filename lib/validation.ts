import type { z } from 'zod';

/** One line listing every problem zod found, each as `path: message`, so a caller fixes all fields at once. */
export function zodIssuesMessage(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`).join('; ');
}
